//! What a rules reload changes: a file that loads brings new rules and what the watcher
//! watches for them (the upload sources' folders, the rules file a link points at now, the
//! pause marker), and whether the watcher must be rebuilt to watch them; a file that does
//! not load is refused, and the last good rules stay. Pure, like
//! [`routing`](super::routing): the load's result and what the watcher watches now in, a
//! [`Reload`] out; the loop carries it out.

use std::path::PathBuf;

use globset::GlobSet;
use notify::RecursiveMode;

use super::watcher_life::sources_of;
use crate::config::rules::Rules;
use crate::error::Result;
use crate::watch::Roots;

/// What the loop does with a reloaded rules file.
#[derive(Debug)]
pub(super) enum Reload {
    /// The new rules are in force from now on.
    Accepted(Box<Accepted>),
    /// The file does not load, and why: the last good rules stay in force.
    Refused { why: String },
}

/// New rules and what the watcher watches for them.
#[derive(Debug)]
pub(super) struct Accepted {
    pub(super) rules: Rules,
    /// The rules file as it resolves now: a re-pointed link resolves elsewhere.
    pub(super) rules_file: PathBuf,
    /// The folders of the upload sources the new rules name, and their globs.
    pub(super) source_dirs: Vec<(PathBuf, RecursiveMode)>,
    pub(super) sources: GlobSet,
    /// The pause marker the new rules name.
    pub(super) pause_file: PathBuf,
    /// The watcher's folders are fixed when it is built (the rules it filters by are
    /// shared and just replaced): other source folders or another rules file need a new
    /// watcher.
    pub(super) rebuild: bool,
}

/// What to do with the rules `loaded` from the rules file, which resolves to `resolved`
/// now (`None` when it cannot be resolved: the file watched so far stays), given the
/// `roots` the watcher watches.
#[must_use]
pub(super) fn decide(loaded: Result<Rules>, resolved: Option<PathBuf>, roots: &Roots) -> Reload {
    let rules = match loaded {
        Ok(rules) => rules,
        Err(e) => return Reload::Refused { why: e.chain() },
    };
    let (source_dirs, sources) = sources_of(&roots.home, &rules);
    let rules_file = resolved.unwrap_or_else(|| roots.rules_file.clone());
    let rebuild = source_dirs != roots.source_dirs || rules_file != roots.rules_file;
    Reload::Accepted(Box::new(Accepted {
        pause_file: roots.data_dir.join(&rules.pause_file),
        rules,
        rules_file,
        source_dirs,
        sources,
        rebuild,
    }))
}

#[cfg(test)]
mod tests {
    //! A load's result and the watcher's roots in, the decision out: no file system.
    use super::*;
    use crate::error::Error;
    use pretty_assertions::assert_eq;
    use std::path::Path;

    const BASE: &str = "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\n";
    const UPLOAD: &str = "[actions.upload]\ncommand = [\"u\"]\nsources = [\"index/*.json\"]\n";

    fn rules(text: &str) -> Rules {
        Rules::parse(Path::new("/home/p/watch-rules.toml"), text).unwrap()
    }

    /// The roots of a watcher started with `text` as its rules.
    fn roots(text: &str) -> Roots {
        let home = PathBuf::from("/home/p");
        let rules = rules(text);
        let (source_dirs, sources) = sources_of(&home, &rules);
        Roots {
            data_dir: home.join("Data"),
            state_dir: home.clone(),
            rules_file: home.join("watch-rules.toml"),
            rules_link: None,
            data_link: None,
            pause_file: home.join("Data").join(&rules.pause_file),
            canary_file: home.join("Data/.memsched-canary-0"),
            home,
            source_dirs,
            sources,
        }
    }

    fn accepted(reload: Reload) -> Accepted {
        match reload {
            Reload::Accepted(accepted) => *accepted,
            Reload::Refused { why } => panic!("refused: {why}"),
        }
    }

    #[test]
    fn a_file_that_does_not_load_is_refused_with_its_error() {
        let error = Error::ConfigParse {
            path: PathBuf::from("/home/p/watch-rules.toml"),
            msg: "expected `=`".to_owned(),
        };
        let reload = decide(Err(error), None, &roots(BASE));
        let Reload::Refused { why } = reload else {
            panic!("accepted: {reload:?}");
        };
        assert!(why.contains("expected `=`"), "{why}");
    }

    #[test]
    fn the_watcher_is_rebuilt_only_when_what_it_watches_moved() {
        let with_upload = format!("{BASE}{UPLOAD}");
        let other_sources = format!("{BASE}{}", UPLOAD.replace("index/", "out/"));
        let same_file = Some(PathBuf::from("/home/p/watch-rules.toml"));
        let repointed = Some(PathBuf::from("/home/p/dotfiles/watch-rules.toml"));
        // (case, rules before, rules after, the file resolves to, rebuild)
        let cases = [
            ("the same rules", BASE, BASE, same_file.clone(), false),
            (
                "other commands, the same folders",
                BASE,
                "[actions.ingest]\ncommand = [\"j\", \"{files}\"]\n",
                same_file.clone(),
                false,
            ),
            (
                "upload sources named anew",
                BASE,
                with_upload.as_str(),
                same_file.clone(),
                true,
            ),
            (
                "upload sources in another folder",
                with_upload.as_str(),
                other_sources.as_str(),
                same_file.clone(),
                true,
            ),
            (
                "upload sources gone",
                with_upload.as_str(),
                BASE,
                same_file.clone(),
                true,
            ),
            ("the rules link re-pointed", BASE, BASE, repointed, true),
            ("the rules file cannot be resolved", BASE, BASE, None, false),
        ];
        for (case, before, after, resolved, rebuild) in cases {
            let roots = roots(before);
            let new = accepted(decide(Ok(rules(after)), resolved.clone(), &roots));
            assert_eq!(new.rebuild, rebuild, "{case}");
            assert_eq!(
                new.rules_file,
                resolved.unwrap_or(roots.rules_file.clone()),
                "{case}: the file watched from now on"
            );
            assert_eq!(
                new.source_dirs,
                sources_of(&roots.home, &new.rules).0,
                "{case}: the source folders watched from now on"
            );
        }
    }

    #[test]
    fn the_pause_marker_the_new_rules_name_is_looked_for_in_data_dir() {
        let roots = roots(BASE);
        let renamed = format!("pause_file = \"hold/.stop\"\n{BASE}");
        let new = accepted(decide(Ok(rules(&renamed)), None, &roots));
        assert_eq!(new.pause_file, PathBuf::from("/home/p/Data/hold/.stop"));
        assert!(
            !new.rebuild,
            "the marker is matched by path, not watched alone"
        );
        let kept = accepted(decide(Ok(rules(BASE)), None, &roots));
        assert_eq!(kept.pause_file, roots.pause_file);
    }
}
