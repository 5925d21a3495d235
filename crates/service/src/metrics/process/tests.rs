use super::*;

#[test]
fn parses_proc_files_including_a_command_name_with_spaces() {
    let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 150 0 0 20 0 8 0 12345 100000000 5000 18446744073709551615";
    let s = parse_stat(stat).unwrap();
    assert_eq!(s.cpu_seconds, 4.0);
    assert_eq!(s.start_time_seconds, Some(123.45));
    assert_eq!(
        boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
        Some(1_700_000_000.0)
    );
    assert_eq!(
        status_kib(
            "Name:\tx\nVmSize:\t  2048 kB\nVmRSS:\t   512 kB\n",
            "VmRSS:"
        ),
        Some(512.0)
    );
    let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
    assert_eq!(max_open_files(limits), Some(1024.0));
}

#[cfg(target_os = "linux")]
#[test]
fn reads_this_process() {
    let s = read().expect("/proc on Linux");
    assert!(s.resident_bytes.unwrap() > 0.0);
    assert!(s.open_fds.unwrap() >= 3.0);
    let now = chrono::Utc::now().timestamp() as f64;
    let start = s.start_time_seconds.unwrap();
    assert!(
        start <= now + 1.0 && start > now - 86_400.0,
        "{start} vs {now}"
    );
}
