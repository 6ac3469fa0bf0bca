//! One integration-test binary: the real server on port 0, driven the way WeChat drives it,
//! with a mock WeChat API on loopback.

mod conversation_log;
mod crash;
mod dedupe;
mod delivery_helpers;
mod helpers;
mod mock_wechat;
mod outbox;
mod quota;
mod webhook;
mod wechat_client;
