//! Tests of the SQLite store as a whole: group commit, dedupe, sessions, quotas, outbox worker.
