//! kefu (客服): a daemon that answers WeChat customer-service messages by rules.
//!
//! # A tour
//!
//! A push from WeChat travels through the crate in one direction:
//!
//! 1. [`http`] receives it on `POST /wechat/{app}`, refuses what is malformed (the checks run in
//!    the order of SPEC §3: app, method, parameters, timestamp window, signature, body) and hands
//!    the body to
//! 2. [`protocol`], which is pure: signature, AES (safe and compatible mode), XML/JSON parsing into
//!    an [`protocol::InboundMessage`] and the rendering of passive replies.
//! 3. [`dispatch`] decides what to do: a pending clarify menu, a sticky handoff, the highest-priority
//!    [`rules`] match, the [`faq`] matcher, the default rule, or nothing. Every decision is an
//!    explainable [`dispatch::Decision`].
//! 4. [`store`] records the decision — dedupe memo, session state, quota, outbox entries and the
//!    conversation log — in group commits; a push that queues messages or changes the user's
//!    session is answered only once that is durable.
//! 5. The outbox worker in [`store`] sends the entries through the [`wechat`] API client after the
//!    push has been answered, retrying what can succeed and recording what cannot.
//!
//! Messages that need work before the send — an image file to upload (cached per app and file
//! content in the store's media cache), a reply composed from the operator's backend ([`fetch`])
//! — are prepared by the outbox worker ([`delivery::prepare`]); an Official Account's fetch is
//! made on the request path, within the answer budget, for its passive reply.
//!
//! [`config`] turns `kefu.yaml` into typed settings; [`startup`] builds the application, binds the
//! listeners and supervises the background tasks; [`metrics`] and the admin side of [`http`]
//! (`/metrics`, the console) show operators what happens; [`cli`] holds one small function per
//! command.
//!
//! Dependencies point one way: `text`, `diag`, `protocol`, `rules` and `faq` do no I/O on the
//! request path and know nothing of actix or reqwest; `dispatch` depends on them; `wechat` and
//! `store` on the domain types; `http` and `startup` on everything; `cli` on `startup`.

pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod diag;
pub mod dispatch;
pub mod faq;
pub mod fetch;
pub mod http;
pub mod metrics;
pub mod net;
pub mod openid;
pub mod outbound;
pub mod protocol;
pub mod rules;
pub mod secret;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod wechat;
