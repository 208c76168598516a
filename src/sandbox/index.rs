//! How an emulator finds accounts by a field's value without reading every account, as a
//! vendor's own database would with an index. Without it each look-up read all accounts, so
//! a load test of thousands of users measured the emulators instead of the bridge.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::emulator::Payload;

/// How the values of an indexed field are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Fold {
    /// ASCII letters without regard to case, as `eq_ignore_ascii_case` compares: unique
    /// names and addresses.
    Ascii,
    /// After `str::to_lowercase`: Appgate's substring search.
    Lower,
}

impl Fold {
    pub(crate) fn apply(self, text: &str) -> String {
        match self {
            Fold::Ascii => text.to_ascii_lowercase(),
            Fold::Lower => text.to_lowercase(),
        }
    }
}

/// A string field of an account (`name`, or `userKey.username` inside an object), compared
/// one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub path: &'static str,
    pub fold: Fold,
}

impl Key {
    pub(crate) const fn ascii(path: &'static str) -> Key {
        Key {
            path,
            fold: Fold::Ascii,
        }
    }

    pub(crate) const fn lower(path: &'static str) -> Key {
        Key {
            path,
            fold: Fold::Lower,
        }
    }

    /// The field's text in `fields`, if it holds a string.
    pub(crate) fn text<'a>(&self, fields: &'a Payload) -> Option<&'a str> {
        let mut parts = self.path.split('.');
        let first = fields.get(parts.next()?)?;
        parts
            .try_fold(first, |value: &Value, part| value.get(part))?
            .as_str()
    }
}

/// The live accounts of one key: their positions by folded value, and how many folded
/// values there are of each length (so a search knows when only equal values can match).
#[derive(Debug, Default)]
struct Postings {
    by_value: HashMap<String, Vec<usize>>,
    lengths: BTreeMap<usize, usize>,
}

/// Positions (in the emulator's list of accounts) of live accounts, per indexed key.
#[derive(Debug, Default)]
pub(crate) struct Index {
    keys: HashMap<Key, Postings>,
}

impl Index {
    pub(crate) fn new(keys: &[Key]) -> Index {
        Index {
            keys: keys.iter().map(|key| (*key, Postings::default())).collect(),
        }
    }

    pub(crate) fn add(&mut self, position: usize, fields: &Payload) {
        for (key, postings) in &mut self.keys {
            let Some(text) = key.text(fields) else {
                continue;
            };
            let folded = key.fold.apply(text);
            *postings.lengths.entry(folded.len()).or_default() += 1;
            let positions = postings.by_value.entry(folded).or_default();
            if let Err(at) = positions.binary_search(&position) {
                positions.insert(at, position);
            }
        }
    }

    pub(crate) fn remove(&mut self, position: usize, fields: &Payload) {
        for (key, postings) in &mut self.keys {
            let Some(text) = key.text(fields) else {
                continue;
            };
            let folded = key.fold.apply(text);
            if let Some(count) = postings.lengths.get_mut(&folded.len()) {
                *count -= 1;
                if *count == 0 {
                    postings.lengths.remove(&folded.len());
                }
            }
            if let Some(positions) = postings.by_value.get_mut(&folded) {
                positions.retain(|held| *held != position);
                if positions.is_empty() {
                    postings.by_value.remove(&folded);
                }
            }
        }
    }

    /// Positions of the live accounts whose `key` folds to what `text` folds to, ascending;
    /// `None` when the key is not indexed.
    pub(crate) fn equal(&self, key: Key, text: &str) -> Option<&[usize]> {
        let postings = self.keys.get(&key)?;
        Some(
            postings
                .by_value
                .get(&key.fold.apply(text))
                .map_or(&[], Vec::as_slice),
        )
    }

    /// The byte length of the longest folded value of `key` among live accounts (0 when
    /// there is none); `None` when the key is not indexed.
    pub(crate) fn longest(&self, key: Key) -> Option<usize> {
        let postings = self.keys.get(&key)?;
        Some(postings.lengths.keys().next_back().copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Payload {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn finds_folded_values_and_forgets_removed_ones() {
        let name = Key::ascii("name");
        let username = Key::ascii("userKey.username");
        let mut index = Index::new(&[name, username]);
        let ana = fields(json!({"name": "Ana", "userKey": {"username": "ANA@x"}}));
        let bob = fields(json!({"name": "ana", "userKey": {"username": "bob@x"}}));
        index.add(0, &ana);
        index.add(1, &bob);
        assert_eq!(index.equal(name, "ANA"), Some(&[0, 1][..]));
        assert_eq!(index.equal(username, "ana@X"), Some(&[0][..]));
        assert_eq!(index.longest(name), Some(3));
        index.remove(0, &ana);
        assert_eq!(index.equal(name, "ana"), Some(&[1][..]));
        assert_eq!(index.equal(username, "ana@x"), Some(&[][..]));
        assert_eq!(index.equal(Key::ascii("email"), "ana@x"), None);
        index.remove(1, &bob);
        assert_eq!(index.longest(name), Some(0));
    }

    #[test]
    fn lowercase_folding_is_not_only_ascii() {
        let key = Key::lower("lastName");
        let mut index = Index::new(&[key]);
        index.add(4, &fields(json!({"lastName": "ÉCLAIR"})));
        assert_eq!(index.equal(key, "éclair"), Some(&[4][..]));
        assert_eq!(index.equal(Key::ascii("lastName"), "éclair"), None);
    }
}
