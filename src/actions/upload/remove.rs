//! Running the `remove` command for uploaded files whose source is gone (issue 17), one
//! file at a time, each result recorded on its entry: `removed` with `removed_at`, or an
//! `error` that the next run, finding the file still gone, tries again.

use serde_json::{Map, Value};

use super::{Done, UploadPlan};
use crate::config::rules::UploadConfig;
use crate::error::Result;
use crate::model::upload_status::UploadStatus;
use crate::model::words;
use crate::run::context::Context;
use crate::run::report::FailedItem;
use crate::state::json_file::Edit;
use crate::state::timestamp;
use crate::state::upload_log::UploadLog;

/// What a run that held removals back says, and what a person does about it.
pub(super) fn held_text(held: usize, why: &str) -> String {
    format!(
        "held back {}: {why}. If they are really gone, run `memsched --once --mode upload --confirm-removals`; if not, bring the files back (nothing was removed)",
        words::count(held, "removal", "removals")
    )
}

/// Deletes each planned removal from the remote, until done or a signal asks to stop. A
/// file that is back by now is left alone (the next run uploads it if it changed). A
/// result that cannot be recorded stops the rest.
pub(super) fn remove_gone(
    ctx: &Context<'_>,
    config: &UploadConfig,
    plan: &UploadPlan,
    done: &mut Done,
) -> Result<()> {
    let Some(command) = &config.remove else {
        return Ok(());
    };
    for item in &plan.remove {
        if ctx.stopping() {
            done.notes.push(
                "removals not run: a signal asked memsched to stop; they wait for the next run"
                    .to_owned(),
            );
            done.stopped = true;
            break;
        }
        if std::fs::metadata(&item.abs).is_ok() {
            done.notes
                .push(format!("not removed {}: the file is back", item.entry));
            continue;
        }
        let (command, error) = super::run_for(ctx, command, item);
        done.commands.extend(command);
        let now = timestamp(ctx.clock.now());
        UploadLog::update(&ctx.paths.upload_log, |log| {
            let mut fields = Map::new();
            fields.insert("updated_at".into(), now.as_str().into());
            match &error {
                None => {
                    fields.insert("status".into(), UploadStatus::Removed.into());
                    fields.insert("removed_at".into(), now.as_str().into());
                    fields.insert("remote".into(), item.remote.as_str().into());
                    fields.insert("error".into(), Value::Null);
                }
                Some(e) => {
                    fields.insert("error".into(), format!("removal failed: {e}").into());
                }
            }
            log.upsert(&item.entry, fields);
            Edit::Changed(())
        })?;
        match error {
            None => done.removed += 1,
            Some(error) => done.failed.push(FailedItem {
                item: item.entry.clone(),
                error: format!("removal: {error}"),
            }),
        }
    }
    Ok(())
}
