//! Port probing on real sockets, candidate order, the listening line, and
//! path errors.

use std::collections::HashSet;
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use portmap::{
    BindHost, DEFAULT_RESOLVE_TIMEOUT, Error, ListeningAddr, PROJECT_PORT_BASE, PROJECT_PORT_SPAN,
    PortCandidates, PortProblem, first_free_port, is_port_free, parse_listening_line,
    port_candidates, port_for_project, probe_port, resolve_path, resolve_path_from,
};

#[test]
fn a_bound_port_is_not_free_and_first_free_port_skips_it() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = listener.local_addr().unwrap().port();
    assert!(!is_port_free("127.0.0.1", taken));
    assert!(!is_port_free("localhost", taken));

    // A range made of only the taken port has nothing free.
    assert_eq!(first_free_port("127.0.0.1", taken..=taken), Ok(None));
    assert_eq!(probe_port("127.0.0.1", taken), Err(PortProblem::InUse));

    // A range starting at the taken port skips it.
    let end = taken.saturating_add(50);
    let found = first_free_port("127.0.0.1", taken..=end)
        .expect("nothing but taken ports on 127.0.0.1")
        .expect("some free port after it");
    assert!(
        found > taken && found <= end,
        "found {found}, taken {taken}"
    );

    drop(listener);
    // Freed again (nobody else binds a just-released ephemeral port on loopback).
    assert!(is_port_free("127.0.0.1", taken));
}

#[test]
fn a_listener_on_the_wildcard_address_also_blocks_loopback() {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let taken = listener.local_addr().unwrap().port();
    assert!(!is_port_free("127.0.0.1", taken));
}

/// Whether the kernel has the IPv6 loopback address: /proc/net/if_inet6
/// lists every IPv6 address, one a line, the address first as 32 hex digits.
/// The file is absent when the kernel runs without IPv6.
fn kernel_has_ipv6_loopback() -> bool {
    const LOOPBACK: &str = "00000000000000000000000000000001";
    match std::fs::read_to_string("/proc/net/if_inet6") {
        Ok(text) => text
            .lines()
            .any(|line| line.split_whitespace().next() == Some(LOOPBACK)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => panic!("cannot read /proc/net/if_inet6: {e}"),
    }
}

#[test]
fn ipv6_loopback_probe() {
    let listener = match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))) {
        Ok(listener) => listener,
        // A machine (or container) without ::1 at all cannot run this check,
        // and that is no defect of portmap: only then is it skipped, and it
        // says so. Writing the notice must not panic either (eprintln! would
        // on a closed stderr). If ::1 exists, failing to bind it is a failure.
        Err(err) if !kernel_has_ipv6_loopback() => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: /proc/net/if_inet6 lists no ::1 (binding [::1]:0: {err}); IPv6 probe not tested"
            );
            return;
        }
        Err(err) => panic!("cannot bind [::1]:0 although /proc/net/if_inet6 lists ::1: {err}"),
    };
    let taken = listener.local_addr().unwrap().port();
    assert!(!is_port_free("::1", taken));
    assert!(!is_port_free("[::1]", taken));
    assert!(
        !is_port_free("localhost", taken),
        "localhost covers ::1 too"
    );
}

#[test]
fn unknown_host_names_are_never_free() {
    assert!(!is_port_free("example.invalid", 28000));
    assert!(!is_port_free("", 28000));
}

/// Writes a notice past the test harness's capture (never panicking on a
/// closed stderr).
fn notice(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "NOTICE: {text}");
}

#[test]
fn an_address_of_another_machine_is_not_available_whatever_the_port() {
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never a local address, unless
    // the kernel is told to allow binding foreign addresses.
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind").is_ok_and(|v| v.trim() == "1")
    {
        notice("net.ipv4.ip_nonlocal_bind=1 lets any address bind; not-available probe not tested");
        return;
    }
    let started = std::time::Instant::now();
    assert_eq!(
        probe_port("192.0.2.1", 28000),
        Err(PortProblem::AddressNotAvailable)
    );
    // Port 0 checks the address alone.
    assert_eq!(
        probe_port("192.0.2.1", 0),
        Err(PortProblem::AddressNotAvailable)
    );
    // The search stops at once: the answer is the same for every port.
    assert_eq!(
        first_free_port("192.0.2.1", 28000..=28999),
        Err(PortProblem::AddressNotAvailable)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let text = PortProblem::AddressNotAvailable.to_string();
    assert!(text.contains("not one of this machine's"), "{text}");
}

#[test]
fn a_name_that_does_not_resolve_is_said_so() {
    // `.invalid` never resolves (RFC 6761); a resolver that cannot be
    // reached at all may time out instead, which is as clear.
    match BindHost::resolve("no-such-host.invalid", DEFAULT_RESOLVE_TIMEOUT) {
        Err(PortProblem::Unresolvable) => {}
        Err(PortProblem::ResolveTimedOut) => {
            notice("the resolver did not answer for no-such-host.invalid; it timed out instead");
        }
        other => panic!("expected Unresolvable, got {other:?}"),
    }
    assert_eq!(
        probe_port("no-such-host.invalid", 28000).map_err(|p| p.is_in_use()),
        Err(false)
    );
    assert_eq!(probe_port("", 28000), Err(PortProblem::Unresolvable));
    assert_eq!(probe_port("[]", 28000), Err(PortProblem::Unresolvable));
}

#[test]
fn literals_and_localhost_resolve_without_the_resolver() {
    let v6 = BindHost::resolve("[::1]", DEFAULT_RESOLVE_TIMEOUT).unwrap();
    assert_eq!(v6.addrs(), &[SocketAddr::from((Ipv6Addr::LOCALHOST, 0))]);
    assert_eq!(v6.name(), "[::1]");
    let local = BindHost::resolve("LocalHost", DEFAULT_RESOLVE_TIMEOUT).unwrap();
    assert_eq!(local.addrs().len(), 2);
    // Port 0 on loopback always binds.
    assert_eq!(local.probe(0), Ok(()));
    assert_eq!(probe_port("127.0.0.1", 0), Ok(()));
}

#[test]
fn candidates_cover_the_range_once_and_wrap() {
    let path = Path::new("/home/user/project");
    let first = port_for_project(path).unwrap();
    let ports: Vec<u16> = port_candidates(path).unwrap().collect();
    assert_eq!(ports.len(), 1000);
    assert_eq!(ports[0], first);
    let distinct: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), 1000);
    assert!(
        ports
            .iter()
            .all(|p| (PROJECT_PORT_BASE..PROJECT_PORT_BASE + PROJECT_PORT_SPAN).contains(p))
    );
    // Each step is +1, except exactly one wrap from 28999 to 28000 (unless
    // the first port is 28000, where there is none).
    let mut wraps = 0;
    for pair in ports.windows(2) {
        if pair[0] == 28999 {
            assert_eq!(pair[1], 28000);
            wraps += 1;
        } else {
            assert_eq!(pair[1], pair[0] + 1);
        }
    }
    assert_eq!(wraps, usize::from(first != 28000));
    // Stable: a second call gives the same order.
    assert!(port_candidates(path).unwrap().eq(ports.iter().copied()));
}

#[test]
fn candidates_starting_near_the_end_wrap_early() {
    let ports: Vec<u16> = PortCandidates::starting_at(28998).collect();
    assert_eq!(&ports[..4], &[28998, 28999, 28000, 28001]);
    assert_eq!(*ports.last().unwrap(), 28997);
    let mut it = PortCandidates::starting_at(28998);
    assert_eq!(it.len(), 1000);
    it.nth(998);
    assert_eq!(it.next(), Some(28997));
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None);
}

fn addr(host: &str, port: u16) -> Option<ListeningAddr> {
    Some(ListeningAddr {
        host: host.to_owned(),
        port,
    })
}

#[test]
fn listening_line_accepted_forms() {
    let cases = [
        (
            "opencode server listening on http://127.0.0.1:4096",
            addr("127.0.0.1", 4096),
        ),
        (
            "opencode server listening on http://127.0.0.1:28123\n",
            addr("127.0.0.1", 28123),
        ),
        (
            "opencode server listening on http://127.0.0.1:28123\r\n",
            addr("127.0.0.1", 28123),
        ),
        (
            "opencode server listening on http://127.0.0.1:1 \t ",
            addr("127.0.0.1", 1),
        ),
        (
            "opencode server listening on http://localhost:65535",
            addr("localhost", 65535),
        ),
        (
            "opencode server listening on http://[::1]:4096",
            addr("::1", 4096),
        ),
        (
            "opencode server listening on http://::1:4096",
            addr("::1", 4096),
        ),
        (
            "opencode server listening on http://127.0.0.1:4096/",
            addr("127.0.0.1", 4096),
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(parse_listening_line(line), expected, "line {line:?}");
    }
}

#[test]
fn listening_line_rejected_forms() {
    let lines = [
        "",
        "Warning: OPENCODE_SERVER_PASSWORD is not set; server is unsecured.",
        "opencode server listening on http://127.0.0.1",
        "opencode server listening on http://127.0.0.1:",
        "opencode server listening on http://127.0.0.1:0",
        "opencode server listening on http://127.0.0.1:65536",
        "opencode server listening on http://127.0.0.1:99999999999",
        "opencode server listening on http://127.0.0.1:+80",
        "opencode server listening on http://127.0.0.1:-1",
        "opencode server listening on http://127.0.0.1:80abc",
        "opencode server listening on http://127.0.0.1:4096/path",
        "opencode server listening on http://127.0.0.1: 4096",
        "opencode server listening on http://:4096",
        "opencode server listening on http://[::1:4096",
        "opencode server listening on http://[nothost]:4096",
        "opencode server listening on http://not:a:host:4096",
        "opencode server listening on http://user@host:4096",
        "opencode server listening on https://127.0.0.1:4096",
        "Opencode server listening on http://127.0.0.1:4096",
        " opencode server listening on http://127.0.0.1:4096",
        "note: opencode server listening on http://127.0.0.1:4096",
        "opencode server listening on http://127.0.0.1:4096 extra",
    ];
    for line in lines {
        assert_eq!(parse_listening_line(line), None, "line {line:?}");
    }
}

#[test]
fn listening_addr_renders_urls() {
    assert_eq!(addr("::1", 80).unwrap().url(), "http://[::1]:80");
    assert_eq!(
        addr("127.0.0.1", 4096).unwrap().url(),
        "http://127.0.0.1:4096"
    );
}

#[test]
fn non_utf8_paths_are_an_error_not_a_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let bad = Path::new(OsStr::from_bytes(b"/tmp/bad\xff/name"));
    let err = port_for_project(bad).unwrap_err();
    assert!(matches!(err, Error::NonUtf8Path { .. }), "{err:?}");
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    assert!(matches!(
        resolve_path_from(Path::new("/base"), bad),
        Err(Error::NonUtf8Path { .. })
    ));
    // A non-UTF-8 base matters only when it is used.
    let bad_base = Path::new(OsStr::from_bytes(b"/\xfe"));
    assert!(matches!(
        resolve_path_from(bad_base, Path::new("rel")),
        Err(Error::NonUtf8Path { .. })
    ));
    assert_eq!(
        resolve_path_from(bad_base, Path::new("/abs")).unwrap(),
        Path::new("/abs")
    );
}

#[test]
fn relative_base_is_an_error() {
    let err = resolve_path_from(Path::new("rel/base"), Path::new("x")).unwrap_err();
    assert!(matches!(err, Error::RelativeBase { .. }), "{err:?}");
}

#[test]
fn resolve_path_uses_the_current_directory() {
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(resolve_path(Path::new("")).unwrap(), cwd);
    assert_eq!(resolve_path(Path::new("./a/../b/")).unwrap(), cwd.join("b"));
    let parent: PathBuf = cwd.parent().map(Path::to_path_buf).unwrap_or(cwd.clone());
    assert_eq!(resolve_path(Path::new("..")).unwrap(), parent);
}
