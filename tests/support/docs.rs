//! A small, deterministic set of awkward records for differential tests of the query language
//! (the data stores' tantivy translation against the matcher): every property type, missing
//! and empty values, lists, case and accents, CJK, punctuation inside words, words of 40 letters
//! and more, integer and date extremes. Also used by the fuzz target `differential`.
#![allow(dead_code)]

use m1::{Property, PropertyType, Record};
use serde_json::{Value, json};

/// The schema of [`records`].
pub fn properties() -> Vec<Property> {
    vec![
        Property::new("s", PropertyType::String),
        Property::new("tags", PropertyType::String).multi(),
        Property::new("body", PropertyType::Text),
        Property::new("n", PropertyType::Integer),
        Property::new("x", PropertyType::Double),
        Property::new("t", PropertyType::Date),
        Property::new("b", PropertyType::Boolean),
    ]
}

pub const STRINGS: &[&str] =
    &["Oslo", "oslo", "New York", "Zürich", "", "a-b", "東京", "x*y", "UPPER lower", "don't", "42", "true"];
pub const TAGS: &[&str] = &["red", "green", "blue", "Red", "dark green", "ø"];
pub const WORDS: &[&str] = &[
    "the",
    "quick",
    "Brown",
    "fox",
    "jumps",
    "ærlig",
    "talt",
    "東京",
    "don't",
    "e-mail",
    "x1",
    "42",
    "3.5",
    "naïve",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "pneumonoultramicroscopicsilicovolcanoconiosisPneumonoultramicroscopicsilicovolcanoconiosis",
];
pub const INTS: &[i64] = &[-5, -1, 0, 1, 2, 3, 42, 1000, 9_007_199_254_740_993, i64::MIN + 1, i64::MAX];
pub const DOUBLES: &[f64] = &[-1.5, 0.0, 0.5, 2.25, 3.0, 1e300, -1e-300, 42.0];
pub const DATES: &[i64] = &[0, -86_400_000, 1_614_107_884_399, 1_614_124_800_000, 4_102_444_800_000, 1];

/// A deterministic generator (SplitMix64), so the records are the same everywhere.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.next() as usize % from.len()]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// `count` records; each property is missing now and then.
pub fn records(count: usize) -> Vec<Record> {
    let mut mix = Mix(7);
    (0..count)
        .map(|_| {
            let mut r = serde_json::Map::new();
            if mix.chance(85) {
                r.insert("s".into(), json!(mix.pick(STRINGS)));
            }
            if mix.chance(80) {
                let n = mix.next() % 4;
                let tags: Vec<Value> = (0..n).map(|_| json!(mix.pick(TAGS))).collect();
                r.insert("tags".into(), Value::Array(tags));
            }
            if mix.chance(85) {
                let n = mix.next() % 8;
                let words: Vec<&str> = (0..n).map(|_| mix.pick(WORDS)).collect();
                let sep = if mix.chance(30) { ", " } else { " " };
                r.insert("body".into(), json!(words.join(sep)));
            }
            if mix.chance(85) {
                r.insert("n".into(), json!(mix.pick(INTS)));
            }
            if mix.chance(85) {
                r.insert("x".into(), json!(mix.pick(DOUBLES)));
            }
            if mix.chance(85) {
                r.insert("t".into(), json!(mix.pick(DATES)));
            }
            if mix.chance(85) {
                r.insert("b".into(), json!(mix.chance(50)));
            }
            r
        })
        .collect()
}
