//! The CPU time a thread has used, logged as it ends (`FAULTLINE_LOG=faultline_agent::thread_cpu=debug`):
//! `make bench` shows with it where `analyze`'s time goes. What the threads that cannot be multiplied —
//! the reader, the front, the writer — spend bounds how far more engine threads can take it.

use std::time::Duration;

/// The calling thread's time on a CPU so far: the first field of `/proc/thread-self/schedstat`, in
/// nanoseconds (the kernel's scheduler clock, not the 10 ms ticks of `stat`).
pub fn used() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    parse(&text)
}

fn parse(schedstat: &str) -> Option<Duration> {
    schedstat.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

/// Logs the calling thread's CPU time under `role`, at debug level (nothing is read unless it is on).
pub fn log(role: &str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        if let Some(cpu) = used() {
            tracing::debug!(thread = role, cpu_ms = cpu.as_secs_f64() * 1e3, "thread CPU time");
        }
    }
}

/// `log` under the calling thread's name (the agent names its threads: `reader`, `engine-0`, …).
pub fn log_this_thread() {
    if let Some(name) = std::thread::current().name() {
        log(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_field_is_nanoseconds_on_a_cpu() {
        assert_eq!(parse("645529 0 1\n"), Some(Duration::from_nanos(645_529)));
        assert_eq!(parse(""), None);
        assert_eq!(parse("x 0 1"), None);
    }

    #[test]
    fn a_busy_thread_uses_cpu_time() {
        let before = used().expect("schedstat on Linux");
        let want = before + Duration::from_millis(2);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while used().expect("schedstat") < want && start.elapsed() < Duration::from_secs(5) {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
        }
        assert!(used().expect("schedstat") >= want, "a counter that stood still ({x})");
    }
}
