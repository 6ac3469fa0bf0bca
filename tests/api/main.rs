//! The black-box test binary: every file is one feature, run against real listeners on
//! loopback and the mock WeChat API.

mod mock_wechat;
mod wechat_client;
