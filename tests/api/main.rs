//! One integration-test binary: the real server on port 0, driven the way WeChat drives it,
//! with a mock WeChat API on loopback.

mod bot_helpers;
mod cli;
mod cli_helpers;
mod console;
mod conversation_log;
mod crash;
mod day;
mod dedupe;
mod delivery_helpers;
mod faq_sessions;
mod fleet;
mod helpers;
mod hostile;
mod mock_wechat;
mod outbox;
mod quota;
mod replies;
mod rules_reload;
mod webhook;
mod wechat_client;
