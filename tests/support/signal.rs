//! Signals to a child process, shared by the integration tests and the liveness benchmark (which includes this file
//! by path): the standard library can only send SIGKILL, and these need SIGTERM, SIGSTOP and SIGCONT too.

use std::process::{Child, Command};

/// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`) to `child`, which must not have been waited for yet (its pid
/// could belong to another process by then).
pub fn send(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal} failed");
}
