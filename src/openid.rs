//! [`OpenId`]: the WeChat user a push came from and a reply goes to. A leaf shared by the
//! protocol that reads it, the store that keys sessions and outboxes by it and the API client
//! that sends to it.
//!
//! Most functions that take a user also take an app, both once `&str`: swapping the two would
//! have compiled and silently read another key. A function that takes `&OpenId` cannot be handed
//! the app id by mistake. It dereferences to `&str`, so code that only reads it (SQL, keys, logs)
//! uses it as one.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// A user's OpenId (`FromUserName` of a push, `touser` of a send).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpenId(String);

impl OpenId {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

impl Deref for OpenId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for OpenId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OpenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for OpenId {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for OpenId {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl PartialEq<str> for OpenId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for OpenId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}
