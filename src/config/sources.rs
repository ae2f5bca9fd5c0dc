//! The folders upload `sources` globs can match in: each glob's literal leading folders,
//! and whether the rest of the glob crosses folders. The watcher watches these, and the
//! upload plan walks only these, not the whole pipeline home (whose Data folder may hold
//! 100,000 memories no source glob names).

use std::path::{Path, PathBuf};

/// A folder (relative to the pipeline home) that source globs can match files in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceFolder {
    pub rel: PathBuf,
    /// The glob crosses folders below it (`**`, or wildcards in a folder name).
    pub recursive: bool,
}

/// The folders `globs` can match in, each once.
#[must_use]
pub(crate) fn folders(globs: &[String]) -> Vec<SourceFolder> {
    let mut out: Vec<SourceFolder> = Vec::new();
    for glob in globs {
        let parts: Vec<&str> = glob.split('/').filter(|p| !p.is_empty()).collect();
        let literal = parts
            .iter()
            .take_while(|p| !p.contains(['*', '?', '[', '{', '\\']))
            .count();
        // The last part names files; a fully literal glob still names its folder.
        let literal = literal.min(parts.len().saturating_sub(1));
        let folder = SourceFolder {
            rel: parts[..literal].iter().collect(),
            recursive: parts.len() - literal > 1 || glob.contains("**"),
        };
        if !out.contains(&folder) {
            out.push(folder);
        }
    }
    out
}

/// Whether a walk from the home must enter `rel`: it is on the way to a source folder,
/// or inside a recursive one.
#[must_use]
pub(crate) fn must_enter(folders: &[SourceFolder], rel: &Path) -> bool {
    folders
        .iter()
        .any(|f| f.rel.starts_with(rel) || (f.recursive && rel.starts_with(&f.rel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(rel: &str, recursive: bool) -> SourceFolder {
        SourceFolder {
            rel: PathBuf::from(rel),
            recursive,
        }
    }

    #[test]
    fn globs_name_their_literal_folders() {
        let globs: Vec<String> = ["index/*.json", "*.db", "out/**/*.bin", "a/b/c.json"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let found = folders(&globs);
        assert_eq!(
            found,
            [
                folder("index", false),
                folder("", false),
                folder("out", true),
                folder("a/b", false),
            ]
        );
        assert!(must_enter(&found, Path::new("index")));
        assert!(must_enter(&found, Path::new("a")));
        assert!(must_enter(&found, Path::new("out/x/y")));
        assert!(
            !must_enter(&found, Path::new("Data")),
            "the memories are not walked"
        );
        assert!(!must_enter(&found, Path::new("index/old")));
    }
}
