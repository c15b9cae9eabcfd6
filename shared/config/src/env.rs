//! Reading typed values from the environment, each invalid one an error naming the variable.

use crate::{ConfigError, Secret};
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

/// The variables settings are read from: the process environment, or a fixed set in tests.
#[derive(Debug, Clone)]
pub struct Env(HashMap<String, String>);

impl Env {
    /// The process's environment, as the functions read it at start-up.
    pub fn from_process() -> Self {
        Env(std::env::vars().collect())
    }

    /// Exactly these variables.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Env(pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect())
    }

    /// A set, non-blank variable, trimmed.
    pub fn value(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.value(name).ok_or(ConfigError::Missing(name))
    }

    /// A comma-separated list of secrets (`new,old` during a rotation); empty when unset.
    pub fn secrets(&self, name: &str) -> Vec<Secret> {
        self.value(name)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Secret::from)
            .collect()
    }

    /// `<name>_SECRET_ID`: the Secrets Manager secret (name or ARN) that holds setting `name`,
    /// read at run time. Setting both the value and its secret is a conflict.
    pub fn secret_id(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let id = self.value(&format!("{name}_SECRET_ID"));
        if id.is_some() && self.value(name).is_some() {
            return Err(ConfigError::Conflict(format!(
                "{name} and {name}_SECRET_ID are both set: set only {name}_SECRET_ID (the secret's name; deployed functions never hold the value) or, in a local run, only {name}"
            )));
        }
        Ok(id)
    }

    /// A positive number of seconds under a day.
    pub fn seconds(&self, name: &'static str) -> Result<Option<Duration>, ConfigError> {
        self.parsed(name, "a positive number of seconds under a day", |v| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
                .map(Duration::from_secs_f64)
        })
    }

    /// A whole number of milliseconds under a minute (0 allowed).
    pub fn millis(&self, name: &'static str) -> Result<Option<Duration>, ConfigError> {
        self.parsed(
            name,
            "a whole number of milliseconds from 0 to 60000",
            |v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|ms| *ms <= 60_000)
                    .map(Duration::from_millis)
            },
        )
    }

    /// An integer within `range`.
    pub fn integer(
        &self,
        name: &'static str,
        range: RangeInclusive<u32>,
    ) -> Result<Option<u32>, ConfigError> {
        let expected = match (range.start(), range.end()) {
            (1, 1024) => "an integer from 1 to 1024",
            (1, 1000) => "an integer from 1 to 1000",
            (1, 10_000) => "an integer from 1 to 10000",
            (1, 1_000_000) => "an integer from 1 to 1000000",
            (1, 300) => "an integer from 1 to 300",
            _ => "an integer in the documented range",
        };
        self.parsed(name, expected, |v| {
            v.parse::<u32>().ok().filter(|n| range.contains(n))
        })
    }

    /// `true`/`1` or `false`/`0`; unset is `false`.
    pub fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        Ok(self
            .parsed(name, "true, false, 1 or 0", |v| match v {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            })?
            .unwrap_or(false))
    }

    fn parsed<T>(
        &self,
        name: &'static str,
        expected: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        self.value(name)
            .map(|value| {
                parse(&value).ok_or(ConfigError::Invalid {
                    name,
                    value,
                    expected,
                })
            })
            .transpose()
    }
}
