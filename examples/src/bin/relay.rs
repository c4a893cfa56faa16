//! A TCP relay that stalls, delays or drops the connections it carries, on command (see
//! `examples::relay`): the network fault of `scripts/chaos.sh --only netfault`.
//!
//! `relay --listen 127.0.0.1:0 --target HOST:PORT`
//!
//! Prints `listening on ADDR`, then switches mode on signals: SIGUSR1 stalls (nothing
//! forwarded, sockets kept open), SIGUSR2 passes again, SIGHUP drops every connection.
//!
//! Every switch and every connection accepted or closed is printed with the wall clock,
//! `mode=stall at_ms=EPOCH_MS`, `closed id=N by=client mode=stall at_ms=EPOCH_MS`, so a
//! script can tell when a stalled connection was given up by its client. Stops on Ctrl-C
//! or SIGTERM.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use examples::relay::{Closer, Event, Mode, Relay};
use examples::{exit_code, parse_flags};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    exit_code("relay", run().await)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// One line to stdout; a closed stdout must not stop the relay.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn run() -> Result<(), String> {
    let (mut listen, mut target) = ("127.0.0.1:0".to_owned(), None);
    for (flag, value) in parse_flags(&["--listen", "--target"])? {
        match flag.as_str() {
            "--listen" => listen = value,
            _ => target = Some(value),
        }
    }
    let target = target.ok_or("--target HOST:PORT is required")?;
    let relay = Relay::start(&listen, &target)
        .await
        .map_err(|e| format!("{listen}: {e}"))?;
    let mut events = relay.subscribe();
    say(format_args!(
        "listening on {} (to {target})",
        relay.local_addr()
    ));
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Accepted { id }) => {
                    say(format_args!("accepted id={id} at_ms={}", now_ms()))
                }
                Ok(Event::Closed { id, by, mode }) => {
                    let by = match by {
                        Closer::Client => "client",
                        Closer::Target => "target",
                        Closer::Relay => "relay",
                    };
                    say(format_args!(
                        "closed id={id} by={by} mode={} at_ms={}",
                        name(mode),
                        now_ms()
                    ))
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    });

    let switch = |mode: Mode| {
        relay.set_mode(mode);
        say(format_args!("mode={} at_ms={}", name(mode), now_ms()));
    };
    let mut stall = signal(tokio::signal::unix::SignalKind::user_defined1())?;
    let mut pass = signal(tokio::signal::unix::SignalKind::user_defined2())?;
    let mut drop = signal(tokio::signal::unix::SignalKind::hangup())?;
    let stop = examples::stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = stall.recv() => switch(Mode::Stall),
            _ = pass.recv() => switch(Mode::Pass),
            _ = drop.recv() => switch(Mode::Drop),
        }
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, String> {
    tokio::signal::unix::signal(kind).map_err(|e| format!("signal handler: {e}"))
}

fn name(mode: Mode) -> String {
    match mode {
        Mode::Pass => "pass".into(),
        Mode::Stall => "stall".into(),
        Mode::Drop => "drop".into(),
        Mode::Delay(delay) => format!("delay_{}ms", delay.as_millis()),
    }
}
