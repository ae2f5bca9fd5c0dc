//! "Did you mean …?" for a misspelt key, value or action name in watch-rules.toml: the
//! closest known name, when it is close enough to be what was meant.

/// The known name closest to `word`, if near enough (a typo, not another word).
#[must_use]
pub(crate) fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(word, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// The names between backticks in `text`, in order ("unknown field `comand`, expected
/// one of `command`, `timeout`" gives comand, command, timeout).
fn ticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// A hint for serde's "unknown field `x`, expected one of `a`, `b`" and "unknown variant
/// `x`, expected `a` or `b`" messages: "; did you mean `a`?".
#[must_use]
pub(super) fn for_message(message: &str) -> Option<String> {
    if !(message.starts_with("unknown field") || message.starts_with("unknown variant")) {
        return None;
    }
    let names = ticked(message);
    let (word, known) = names.split_first()?;
    closest(word, known.iter().copied()).map(|k| format!("; did you mean `{k}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_closest_name_and_other_words_get_none() {
        assert_eq!(
            for_message("unknown field `comand`, expected one of `command`, `timeout`"),
            Some("; did you mean `command`?".to_owned())
        );
        assert_eq!(
            for_message("unknown variant `dat`, expected `data` or `state`"),
            Some("; did you mean `data`?".to_owned())
        );
        assert_eq!(
            for_message("unknown field `zzz`, expected one of `command`, `timeout`"),
            None
        );
        assert_eq!(closest("ingets", ["ingest", "retry"]), Some("ingest"));
        assert_eq!(
            closest("reindex", ["ingest", "retry", "upload", "watchdog"]),
            None
        );
    }
}
