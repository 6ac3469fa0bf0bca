//! The real `kefu` binary killed and restarted (SPEC §6): a reply whose push was answered is
//! never lost and never sent twice once WeChat accepted it, whether the process is SIGKILLed
//! while the API refuses, SIGKILLed with sends in flight, or stopped with SIGTERM while the API
//! is down. Replies are told apart by (touser, content).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::delivery_helpers::*;
use crate::helpers::*;
use crate::mock_wechat::{MockGate, MockReply, MockWechat, RecordedSend};

/// 人工 hands off; 订单 N answers with the order number.
const RULES: &str = ORDER_RULES;

const USERS: usize = 20;

fn user(i: usize) -> String {
    format!("o_crash_{i:02}")
}

/// Pushes one order message per user and checks each got its `success`.
async fn push_all(daemon: &Daemon) -> Vec<kefu::protocol::InboundMessage> {
    let mut msgs = Vec::new();
    for i in 0..USERS {
        let msg = text_msg(&user(i), &format!("订单 {}", 1000 + i));
        let r = daemon.post(&msg).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "success"),
            "push {i}: {r:?}"
        );
        msgs.push(msg);
    }
    msgs
}

/// How often each (touser, content) appears in `sends`.
fn tally(sends: &[RecordedSend]) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for s in sends {
        *seen.entry(to_and_text(s)).or_insert(0) += 1;
    }
    seen
}

/// Every user's reply exactly once.
fn assert_each_exactly_once(accepted: &[RecordedSend]) {
    let seen = tally(accepted);
    let want: BTreeMap<(String, String), usize> = (0..USERS)
        .map(|i| ((user(i), format!("已收到订单 {}", 1000 + i)), 1))
        .collect();
    assert_eq!(seen, want, "every reply arrives exactly once");
}

/// Waits until the daemon's outbox on disk holds nothing queued or sending.
async fn wait_drained(dir: &DaemonDir, daemon: &Daemon) {
    let drained = eventually(Duration::from_secs(20), async || {
        let c = counts_on_disk(&dir.data_dir());
        c.queued == 0 && c.sending == 0
    })
    .await;
    assert!(
        drained,
        "outbox not drained: {:?}\n{}",
        counts_on_disk(&dir.data_dir()),
        daemon.log_text()
    );
}

#[tokio::test]
async fn sigkill_while_the_api_refuses_loses_nothing_and_sends_nothing_twice() {
    let mock = MockWechat::start().await;
    // Every send with the first process's token is refused as "system busy" (retryable).
    mock.reject_token("tok-1", -1);
    let dir = DaemonDir::new(RULES);
    let settings = dir.write_config(&mock.base_url(), PATIENT_OUTBOX);

    let mut first = Daemon::start(&dir, settings.clone(), "first").await;
    let msgs = push_all(&first).await;
    // The worker is busy retrying when the process dies.
    mock.wait_for_sends(2 * USERS, Duration::from_secs(20))
        .await;
    first.kill();
    assert!(
        mock.sends().iter().all(|s| s.access_token == "tok-1"),
        "nothing was accepted before the kill"
    );
    let c = counts_on_disk(&dir.data_dir());
    assert_eq!((c.queued + c.sending, c.failed), (USERS as u64, 0), "{c:?}");
    let refused = mock.sends().len();

    let mut second = Daemon::start(&dir, settings, "second").await;
    // A retry of an answered push, after the restart: the same answer, nothing sent again.
    let again = second.post(&msgs[3]).await;
    assert_eq!((again.status, again.body.as_str()), (200, "success"));
    wait_drained(&dir, &second).await;
    assert_eq!(second.terminate().await.code(), Some(0));

    let accepted = &mock.sends()[refused..];
    assert!(accepted.iter().all(|s| s.access_token == "tok-2"));
    assert_each_exactly_once(accepted);
}

#[tokio::test]
async fn sigkill_with_sends_in_flight_loses_nothing_and_sends_nothing_twice() {
    let mock = MockWechat::start().await;
    // Four sends at a time; the first four hang at the API and are never answered.
    let gate = MockGate::new();
    mock.script_send(vec![MockReply::ok().held(&gate); 4]);
    let dir = DaemonDir::new(RULES);
    // Requests are never cut off here, so the four held sends stay in flight until the kill.
    let extra = format!("{PATIENT_OUTBOX}  concurrency: 4\n");
    let settings = dir.write_config(&mock.base_url(), &extra);

    let mut first = Daemon::start(&dir, settings.clone(), "first").await;
    push_all(&first).await;
    mock.wait_for_sends(4, Duration::from_secs(20)).await;
    let c = counts_on_disk(&dir.data_dir());
    assert_eq!((c.queued, c.sending), (USERS as u64 - 4, 4), "{c:?}");
    first.kill();
    assert_eq!(mock.sends().len(), 4, "nothing else was sent");

    let mut second = Daemon::start(&dir, settings, "second").await;
    wait_drained(&dir, &second).await;
    // The resends are counted: exactly the calls in flight at the kill.
    let m = second.metrics().await;
    assert_eq!(
        sample(&m, "kefu_outbox_resent_after_restart_total"),
        Some(4.0),
        "{m}"
    );
    assert_eq!(second.terminate().await.code(), Some(0));
    gate.open();

    // The four cut-off sends were never accepted, so they go again: once each.
    let sends = mock.sends();
    assert_each_exactly_once(&sends[4..]);
    let cut_off: Vec<_> = sends[..4].iter().map(to_and_text).collect();
    let resent = tally(&sends[4..]);
    assert!(cut_off.iter().all(|k| resent.get(k) == Some(&1)));
}

#[tokio::test]
async fn sigkill_between_sends_resends_nothing() {
    let mock = MockWechat::start().await;
    let dir = DaemonDir::new(RULES);
    let settings = dir.write_config(&mock.base_url(), PATIENT_OUTBOX);
    let mut first = Daemon::start(&dir, settings.clone(), "first").await;
    push_all(&first).await;
    wait_drained(&dir, &first).await;
    // Every send was accepted and recorded: a kill now has nothing in flight.
    first.kill();
    let sent = mock.sends().len();
    assert_each_exactly_once(&mock.sends());

    let mut second = Daemon::start(&dir, settings, "second").await;
    let m = second.metrics().await;
    assert_eq!(
        sample(&m, "kefu_outbox_resent_after_restart_total"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(second.terminate().await.code(), Some(0));
    assert_eq!(mock.sends().len(), sent, "nothing was sent again");
}

#[tokio::test]
async fn sigterm_while_the_api_is_down_leaves_the_replies_for_the_next_start() {
    let dir = DaemonDir::new(RULES);
    let settings = dir.write_config(&dead_api_base(), PATIENT_OUTBOX);

    let mut first = Daemon::start(&dir, settings, "first").await;
    let msgs = push_all(&first).await;
    let handoff = text_msg("o_crash_handoff", "转人工");
    let transfer = first.post(&handoff).await;
    assert!(
        transfer.body.contains("transfer_customer_service"),
        "{transfer:?}"
    );
    let status = first.terminate().await;
    assert_eq!(status.code(), Some(0), "{}", first.log_text());
    assert!(
        first
            .log_lines()
            .iter()
            .any(|l| l["message"] == "SIGTERM: stopping"),
        "{}",
        first.log_text()
    );
    let c = counts_on_disk(&dir.data_dir());
    assert_eq!((c.queued + c.sending, c.failed), (USERS as u64, 0), "{c:?}");

    // The API is back (at another address; the outbox does not care).
    let mock = MockWechat::start().await;
    let settings = dir.write_config(&mock.base_url(), PATIENT_OUTBOX);
    let mut second = Daemon::start(&dir, settings, "second").await;
    let again = second.post(&msgs[0]).await;
    assert_eq!((again.status, again.body.as_str()), (200, "success"));
    // A retry of the handoff after the restart: the same transfer, byte for byte.
    let again = second.post(&handoff).await;
    assert_eq!(
        (again.status, &again.content_type, &again.body),
        (200, &transfer.content_type, &transfer.body)
    );
    wait_drained(&dir, &second).await;
    assert_eq!(second.terminate().await.code(), Some(0));

    assert_each_exactly_once(&mock.sends());
}

#[tokio::test]
async fn sigterm_with_sends_in_flight_stops_within_the_grace_and_the_next_start_sends_them() {
    let mock = MockWechat::start().await;
    let gate = MockGate::new();
    mock.script_send(vec![MockReply::ok().held(&gate); 4]);
    let dir = DaemonDir::new(RULES);
    let extra = format!("{PATIENT_OUTBOX}  concurrency: 4\n");
    let settings = dir.write_config(&mock.base_url(), &extra);

    let mut first = Daemon::start(&dir, settings.clone(), "first").await;
    push_all(&first).await;
    mock.wait_for_sends(4, Duration::from_secs(20)).await;
    let stopping = std::time::Instant::now();
    assert_eq!(
        first.terminate().await.code(),
        Some(0),
        "{}",
        first.log_text()
    );
    // The worker's grace for sends in flight is 5 s; the stop must not wait on the API longer.
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "stopped in {:?}",
        stopping.elapsed()
    );
    assert_eq!(mock.sends().len(), 4);
    let c = counts_on_disk(&dir.data_dir());
    assert_eq!((c.queued + c.sending, c.failed), (USERS as u64, 0), "{c:?}");

    let mut second = Daemon::start(&dir, settings, "second").await;
    wait_drained(&dir, &second).await;
    assert_eq!(second.terminate().await.code(), Some(0));
    gate.open();
    assert_each_exactly_once(&mock.sends()[4..]);
}

/// Reads from `conn` until `raw` holds a complete HTTP/1.1 response head and, when the head has
/// a Content-Length, that many body bytes; returns the response as text.
async fn read_response(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .expect("the response comes within the wait")
            .expect("read");
        assert!(n > 0, "connection closed after {text:?}");
        raw.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn sigterm_finishes_a_push_in_flight_and_keeps_its_reply() {
    use tokio::io::AsyncWriteExt;

    let dir = DaemonDir::new(RULES);
    let settings = dir.write_config(&dead_api_base(), PATIENT_OUTBOX);
    let mut daemon = Daemon::start(&dir, settings.clone(), "first").await;

    // A push whose body is still arriving when SIGTERM comes. `Expect: 100-continue` tells us
    // when the server has taken the request in hand (it answers `100 Continue` once it calls the
    // handler): a request still unread in a socket buffer is not in flight, and a stopping
    // server rightly closes its connection.
    let msg = text_msg("o_in_flight", "订单 77");
    let app = settings.app("mp").expect("app");
    let push = kefu::cli::send::build_push(app, &msg, TestApp::now(), "4242").expect("push");
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", daemon.port))
        .await
        .expect("connect");
    let head = format!(
        "POST /wechat/mp?{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {}\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        push.query,
        push.content_type,
        push.body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("head");
    let proceed = read_response(&mut conn).await;
    assert!(proceed.starts_with("HTTP/1.1 100"), "{proceed}");
    let (first_half, second_half) = push.body.as_bytes().split_at(push.body.len() / 2);
    conn.write_all(first_half).await.expect("first half");

    let sent = std::process::Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(sent.success());
    let stopping = eventually(WAIT, async || {
        daemon
            .log_lines()
            .iter()
            .any(|l| l["message"] == "graceful worker shutdown; finishing 1 connections")
    })
    .await;
    assert!(stopping, "{}", daemon.log_text());

    conn.write_all(second_half).await.expect("second half");
    let answer = read_response(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nsuccess"), "{answer}");
    drop(conn);
    assert_eq!(daemon.wait_exit().await.code(), Some(0));
    let c = counts_on_disk(&dir.data_dir());
    assert_eq!(
        c.queued + c.sending,
        1,
        "the reply waits for the next start: {c:?}"
    );
}
