//! [`Files`]: the records by key, in three allocations however many there are: every key
//! back to back in one string, the records in one list, and a table of their indexes.
//! 100,000 boxed keys in a `HashMap` were 100,000 small allocations living among a run's
//! short-lived ones, which glibc then could not hand back (issue 8).

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::record::Record;

#[derive(Debug)]
struct Entry {
    /// Where the key sits in `names`.
    at: u32,
    len: u32,
    rec: Record,
}

#[derive(Debug, Default)]
pub(super) struct Files {
    names: String,
    entries: Vec<Entry>,
    table: HashTable<u32>,
    hasher: RandomState,
}

impl Files {
    pub(super) fn with_capacity(n: usize) -> Files {
        Files {
            entries: Vec::with_capacity(n),
            table: HashTable::with_capacity(n),
            ..Files::default()
        }
    }

    fn name(&self, e: &Entry) -> &str {
        &self.names[e.at as usize..(e.at + e.len) as usize]
    }

    fn find(&self, key: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find(hash, |&i| self.name(&self.entries[i as usize]) == key)
            .map(|&i| i as usize)
    }

    pub(super) fn get(&self, key: &str) -> Option<&Record> {
        self.find(key).map(|i| &self.entries[i].rec)
    }

    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut Record> {
        self.find(key).map(|i| &mut self.entries[i].rec)
    }

    /// Sets the record of `key`, replacing one it had.
    pub(super) fn insert(&mut self, key: &str, rec: Record) {
        if let Some(i) = self.find(key) {
            self.entries[i].rec = rec;
            return;
        }
        let (at, len, index) = (
            u32::try_from(self.names.len()).expect("keys fit in 4 GiB"),
            u32::try_from(key.len()).expect("a key fits in 4 GiB"),
            u32::try_from(self.entries.len()).expect("fewer than 4 billion files"),
        );
        self.grow_for(key.len());
        self.names.push_str(key);
        self.entries.push(Entry { at, len, rec });
        let hash = self.hasher.hash_one(key);
        let (names, entries, hasher) = (&self.names, &self.entries, &self.hasher);
        self.table.insert_unique(hash, index, |&i| {
            let e = &entries[i as usize];
            hasher.hash_one(&names[e.at as usize..(e.at + e.len) as usize])
        });
    }

    /// Makes room for one more record. A full list grows by an eighth, not by doubling:
    /// the watcher holds this for its whole life, and one file saved into a home of
    /// 100,000 would otherwise leave room for 100,000 more (9 MiB of entries; issue 8).
    fn grow_for(&mut self, key_len: usize) {
        let step = |n: usize| (n / 8).max(64);
        if self.entries.len() == self.entries.capacity() {
            self.entries.reserve_exact(step(self.entries.len()));
        }
        if self.names.capacity() - self.names.len() < key_len {
            self.names
                .reserve_exact(step(self.names.len()).max(key_len));
        }
    }

    /// Removes the record of `key`. The last record takes its place in the list; its key's
    /// bytes stay in `names` until the manifest is next loaded (removals are rare).
    pub(super) fn remove(&mut self, key: &str) -> Option<Record> {
        let i = self.find(key)?;
        let hash = self.hasher.hash_one(key);
        let index = u32::try_from(i).expect("fewer than 4 billion files");
        if let Ok(found) = self.table.find_entry(hash, |&j| j == index) {
            found.remove();
        }
        let last = self.entries.len() - 1;
        if i != last {
            let moved = self.hasher.hash_one(self.name(&self.entries[last]));
            let last = u32::try_from(last).expect("fewer than 4 billion files");
            if let Some(slot) = self.table.find_mut(moved, |&j| j == last) {
                *slot = index;
            }
        }
        Some(self.entries.swap_remove(i).rec)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &Record)> {
        self.entries.iter().map(|e| (self.name(e), &e.rec))
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| self.name(e))
    }

    /// Gives back what loading reserved beyond the records read.
    pub(super) fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
        self.entries.shrink_to_fit();
        // The table is rebuilt to shrink it: worth it only when much is unused.
        if self.table.capacity() < self.entries.len() * 2 {
            return;
        }
        let (names, entries, hasher) = (&self.names, &self.entries, &self.hasher);
        self.table.shrink_to_fit(|&i| {
            let e = &entries[i as usize];
            hasher.hash_one(&names[e.at as usize..(e.at + e.len) as usize])
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ingest_hash::record::Digest;
    use crate::state::stat::Stat;

    #[test]
    fn keys_find_their_records_and_a_second_insert_replaces() {
        let mut files = Files::default();
        let stat = |n| Stat {
            size: n,
            mtime_ns: 0,
            inode: n,
            ctime_ns: None,
        };
        for i in 0..1000 {
            let rec = Record::new(Digest([0; 32]), stat(i), std::time::UNIX_EPOCH);
            files.insert(&format!("d/{i}.txt"), rec);
        }
        let rec = Record::new(Digest([1; 32]), stat(7), std::time::UNIX_EPOCH);
        files.insert("d/7.txt", rec);
        files.shrink_to_fit();
        assert_eq!(files.len(), 1000);
        assert_eq!(files.get("d/7.txt").unwrap().hash(), Some(Digest([1; 32])));
        assert_eq!(files.get("d/999.txt").unwrap().stat(), Some(stat(999)));
        assert!(files.get("d/1000.txt").is_none());
        assert_eq!(files.keys().filter(|k| k.starts_with("d/")).count(), 1000);
    }

    #[test]
    fn one_more_record_in_a_full_manifest_grows_it_by_an_eighth() {
        let stat = Stat {
            size: 1,
            mtime_ns: 0,
            inode: 1,
            ctime_ns: None,
        };
        let mut files = Files::default();
        for i in 0..8000 {
            let rec = Record::new(Digest([0; 32]), stat, std::time::UNIX_EPOCH);
            files.insert(&format!("d/{i:05}.txt"), rec);
        }
        files.shrink_to_fit();
        assert_eq!(files.entries.capacity(), 8000);
        let rec = Record::new(Digest([0; 32]), stat, std::time::UNIX_EPOCH);
        files.insert("d/new.txt", rec);
        assert_eq!(files.entries.capacity(), 9000, "not 16,000");
        assert!(
            files.names.capacity() <= 9 * 11 * 1000 + 64,
            "{}",
            files.names.capacity()
        );
        assert_eq!(files.get("d/new.txt").map(Record::stat), Some(Some(stat)));
    }
}
