//! watchdog_state.json: the health summary the watchdog writes. Top-level fields memsched
//! does not write (a note from the user's own watchdog, say) are kept.

use std::path::Path;

use serde_json::Value;

use super::json_file;
use crate::error::{Error, Result};

/// Replaces the known fields of watchdog_state.json with `health` (an object). A file that
/// does not parse is left untouched and the error returned.
pub fn write(path: &Path, health: Value) -> Result<()> {
    let mut root = match json_file::read(path)? {
        None => serde_json::Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(Error::StateShape {
                path: path.to_path_buf(),
                msg: "expected an object".to_owned(),
            });
        }
    };
    if let Value::Object(fields) = health {
        root.extend(fields);
    }
    json_file::write(path, &Value::Object(root))
}
