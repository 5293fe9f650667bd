//! One file as a configuration source: its documents remembered by their text, each new
//! version of the file turned into per-object changes for the [`crate::Store`].
//!
//! The cost of a new version is a split into documents and one hash lookup per document;
//! only new or edited documents are parsed, and only they, the documents that moved (their
//! origin changes) and the ones that went become changes. One Service edited in a file of
//! 27,000 is one document parsed and one change. When the file defines a key twice (before or
//! after), which documents win depends on their order, so the whole file's objects are
//! compared instead ([`SourceContent::update_to`]); the result is the same either way.

use std::collections::HashSet;

use crate::ObjectKey;
use crate::error::Location;
use crate::object::Loaded;
use crate::parse::{DocCache, ParsedSource, parse_documents_cached, parse_many, split_documents};
use crate::store::{SourceChange, SourceContent, SourceUpdate};

/// One file's state between versions.
#[derive(Debug)]
pub struct FileSource {
    name: String,
    cache: DocCache,
    content: SourceContent,
    /// The last version defined a key twice (the slow path until it no longer does).
    duplicates: bool,
}

impl FileSource {
    /// A file named `name` (the source name in every error and origin), not read yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cache: DocCache::default(),
            content: SourceContent::default(),
            duplicates: false,
        }
    }

    /// The file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Objects the file defines now.
    pub fn len(&self) -> usize {
        self.content.len()
    }

    /// True when it defines nothing.
    pub fn is_empty(&self) -> bool {
        self.content.is_empty()
    }

    /// The file now reads `text`: what changed since the last version.
    pub fn update(&mut self, text: &str) -> SourceUpdate {
        if !self.duplicates
            && let Some(u) = self.fast(text)
        {
            return u;
        }
        let parsed = parse_documents_cached(&self.name, text, &mut self.cache);
        self.apply_whole(&parsed)
    }

    /// The file cannot be read (or is not UTF-8): it keeps what it last held (every object
    /// it defined stays at its last good version, the store's rule 3).
    pub fn unreadable(&mut self, message: impl Into<String>) -> SourceUpdate {
        self.cache = DocCache::default();
        let parsed = ParsedSource::unreadable(&self.name, message);
        self.apply_whole(&parsed)
    }

    /// The file is gone.
    pub fn removed(self) -> SourceUpdate {
        SourceUpdate {
            source: self.name.as_str().into(),
            change: SourceChange::Removed,
        }
    }

    fn apply_whole(&mut self, parsed: &ParsedSource) -> SourceUpdate {
        let (u, content) = self.content.update_to(parsed);
        self.content = content;
        self.duplicates =
            matches!(&u.change, SourceChange::Update { duplicates, .. } if !duplicates.is_empty());
        u
    }

    /// The document-level update, or `None` when keys collide (the whole-file path decides).
    fn fast(&mut self, text: &str) -> Option<SourceUpdate> {
        self.cache.generation += 1;
        let generation = self.cache.generation;
        let docs = split_documents(text);
        let mut upserts: Vec<Loaded> = Vec::new();
        let mut misses = Vec::new();
        let mut collide = false;
        for d in &docs {
            match self.cache.docs.get_mut(d.text) {
                // The same text twice: the same key twice.
                Some(c) if c.seen == generation => collide = true,
                Some(c) => {
                    c.seen = generation;
                    let loc = &mut c.loaded.origin.location;
                    if loc.document != d.index || loc.line != Some(d.content_line) {
                        *loc = Location {
                            source: self.name.clone(),
                            document: d.index,
                            line: Some(d.content_line),
                        };
                        upserts.push(c.loaded.clone());
                    }
                }
                None => misses.push(d),
            }
        }
        let results = parse_many(&self.name, &misses);
        let mut errors = Vec::new();
        let mut new_keys: HashSet<ObjectKey> = HashSet::new();
        for (d, r) in misses.iter().zip(results) {
            match r {
                Ok(Some(l)) => {
                    self.cache.remember(d.text, &l, generation);
                    collide |= !new_keys.insert(l.object.key());
                    upserts.push(l);
                }
                Ok(None) => {}
                Err(e) => errors.push(*e),
            }
        }
        let mut gone: Vec<ObjectKey> = Vec::new();
        self.cache.docs.retain(|_, c| {
            let keep = c.seen == generation;
            if !keep {
                gone.push(c.key.clone());
            }
            keep
        });
        // A new document whose key a document still in the file defines: a duplicate.
        let gone_set: HashSet<&ObjectKey> = gone.iter().collect();
        collide |= new_keys
            .iter()
            .any(|k| self.content.contains(k) && !gone_set.contains(k));
        if collide {
            // The cache already holds this version's documents; the whole-file path reuses
            // them.
            self.duplicates = true;
            return None;
        }
        let deletes: Vec<ObjectKey> = gone.into_iter().filter(|k| !new_keys.contains(k)).collect();
        self.content.apply(&upserts, &deletes);
        Some(SourceUpdate {
            source: self.name.as_str().into(),
            change: SourceChange::Update {
                upserts,
                deletes,
                errors,
                duplicates: Vec::new(),
            },
        })
    }
}
