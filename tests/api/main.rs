//! One integration-test binary: the real server on port 0, driven the way WeChat drives it.

mod helpers;
mod webhook;
