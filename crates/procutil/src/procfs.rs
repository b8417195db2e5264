//! Reading /proc (the one place in ocm meant to): process identity and
//! state, command line, memory, environment, sessions, the list of
//! processes and the holder of a listening port.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::Error;

/// Who a process is, in a way that survives PID reuse: the pid alone can be
/// given to a new process after the old one is reaped, but not with the same
/// start time within the same boot.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ProcessIdentity {
    /// The process id.
    pub pid: u32,
    /// When the process started, in clock ticks since boot (field 22 of
    /// `/proc/PID/stat`).
    pub start_time: u64,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`): start
    /// times only compare within one boot.
    pub boot_id: String,
}

impl ProcessIdentity {
    /// The identity of the running process `pid`.
    ///
    /// Fails with [`Error::NoSuchProcess`] when there is no such process or
    /// it has exited (a zombie, state Z or X, counts as exited).
    pub fn of(pid: u32) -> Result<Self, Error> {
        let stat = read_stat(pid)?;
        if stat.is_dead() {
            return Err(Error::NoSuchProcess { pid });
        }
        Ok(ProcessIdentity {
            pid,
            start_time: stat.start_time,
            boot_id: boot_id()?,
        })
    }

    /// Whether this process is still running: the same pid with the same
    /// start time in the same boot, and not a zombie.
    pub fn is_alive(&self) -> bool {
        matches!(self.check(), Ok(Liveness::Alive(_)))
    }

    /// Compares the identity with what /proc says now.
    pub(crate) fn check(&self) -> Result<Liveness, Error> {
        if boot_id()? != self.boot_id {
            return Ok(Liveness::Mismatch(format!(
                "it was identified in boot {}, this is boot {}",
                self.boot_id,
                boot_id()?
            )));
        }
        let stat = match read_stat(self.pid) {
            Ok(stat) => stat,
            Err(Error::NoSuchProcess { .. }) => return Ok(Liveness::Gone),
            Err(other) => return Err(other),
        };
        if stat.start_time != self.start_time {
            return Ok(Liveness::Mismatch(format!(
                "start time {} expected, {} found",
                self.start_time, stat.start_time
            )));
        }
        if stat.is_dead() {
            Ok(Liveness::Zombie)
        } else {
            Ok(Liveness::Alive(stat))
        }
    }
}

/// What an identity check found.
#[derive(Debug)]
pub(crate) enum Liveness {
    /// The identified process is running.
    Alive(Stat),
    /// The identified process has exited but is not reaped yet.
    Zombie,
    /// No process has the pid.
    Gone,
    /// Another process has the pid (or the identity is from another boot).
    Mismatch(String),
}

/// The fields of `/proc/PID/stat` this crate uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Field 3: R, S, D, Z, T, X, ...
    pub state: char,
    /// Field 4.
    pub ppid: u32,
    /// Field 5.
    pub pgrp: u32,
    /// Field 6.
    pub session: u32,
    /// Field 9: the kernel's `PF_*` flags.
    pub flags: u32,
    /// Fields 50 and 51: where the environment starts and ends in the
    /// process's memory (0 without memory, or an exec not that far yet;
    /// `None` on a kernel before 3.5).
    pub env: Option<(u64, u64)>,
    /// Field 20.
    pub num_threads: u64,
    /// Field 22.
    pub start_time: u64,
}

impl Stat {
    /// Zombie or dead: the process has exited. A main thread that exited
    /// before the other threads also shows Z, but while it has live threads
    /// the process runs on (and its thread count is above one).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x') && self.num_threads <= 1
    }

    /// A kernel thread (`PF_KTHREAD`): no memory of its own, so no command
    /// line and no environment.
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & 0x0020_0000 != 0
    }
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// Reads a /proc file of `pid`; a missing process becomes
/// [`Error::NoSuchProcess`].
fn read_proc_file(pid: u32, file: &str) -> Result<Vec<u8>, Error> {
    if pid == 0 {
        return Err(Error::NoSuchProcess { pid });
    }
    let path = proc_path(pid, file);
    std::fs::read(&path).map_err(|source| match source.raw_os_error() {
        // ESRCH: the process exited while we were reading.
        Some(libc::ENOENT) | Some(libc::ESRCH) => Error::NoSuchProcess { pid },
        _ => Error::ProcRead { path, source },
    })
}

/// Reads and parses `/proc/PID/stat`. A zombie is returned as such.
pub(crate) fn read_stat(pid: u32) -> Result<Stat, Error> {
    let bytes = read_proc_file(pid, "stat")?;
    parse_stat(&bytes).map_err(|detail| Error::ProcFormat {
        path: proc_path(pid, "stat"),
        detail,
    })
}

/// Parses the contents of a `/proc/PID/stat` file.
///
/// The command name (field 2) is in parentheses and may itself contain
/// spaces and ')', so the fields are counted from the LAST ')'.
pub(crate) fn parse_stat(bytes: &[u8]) -> Result<Stat, String> {
    let close = bytes
        .iter()
        .rposition(|&b| b == b')')
        .ok_or_else(|| "no ')' after the command name".to_string())?;
    let rest = std::str::from_utf8(&bytes[close + 1..])
        .map_err(|_| "fields after the command name are not UTF-8".to_string())?;
    // rest[0] is field 3 (state), so field n is at index n - 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| -> Result<&str, String> {
        fields
            .get(n - 3)
            .copied()
            .ok_or_else(|| format!("only {} fields, field {n} missing", fields.len() + 2))
    };
    let number = |n: usize| -> Result<u64, String> {
        let text = field(n)?;
        text.parse::<u64>()
            .map_err(|_| format!("field {n} is {text:?}, not a number"))
    };
    let state_field = field(3)?;
    let mut chars = state_field.chars();
    let state = match (chars.next(), chars.next()) {
        (Some(c), None) => c,
        _ => return Err(format!("field 3 (state) is {state_field:?}")),
    };
    let small = |n: usize| -> Result<u32, String> {
        u32::try_from(number(n)?).map_err(|_| format!("field {n} is out of range"))
    };
    Ok(Stat {
        state,
        ppid: small(4)?,
        pgrp: small(5)?,
        session: small(6)?,
        flags: small(9)?,
        env: number(50).ok().zip(number(51).ok()),
        num_threads: number(20)?,
        start_time: number(22)?,
    })
}

/// The kernel's boot id, a UUID that changes at every boot
/// (`/proc/sys/kernel/random/boot_id`). Read once per process.
pub fn boot_id() -> Result<String, Error> {
    static BOOT_ID: OnceLock<String> = OnceLock::new();
    if let Some(id) = BOOT_ID.get() {
        return Ok(id.clone());
    }
    let path = PathBuf::from("/proc/sys/kernel/random/boot_id");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::ProcRead {
        path: path.clone(),
        source,
    })?;
    let id = text.trim();
    if id.is_empty() {
        return Err(Error::ProcFormat {
            path,
            detail: "empty".to_string(),
        });
    }
    Ok(BOOT_ID.get_or_init(|| id.to_string()).clone())
}

/// The command line of process `pid` (`/proc/PID/cmdline`), one string per
/// argument; invalid UTF-8 is replaced. Empty for a zombie or a kernel thread.
pub fn cmdline(pid: u32) -> Result<Vec<String>, Error> {
    let bytes = read_proc_file(pid, "cmdline")?;
    Ok(split_nul(&bytes)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect())
}

/// The working folder of process `pid` (`/proc/PID/cwd`).
pub fn cwd(pid: u32) -> Result<PathBuf, Error> {
    if pid == 0 {
        return Err(Error::NoSuchProcess { pid });
    }
    let path = proc_path(pid, "cwd");
    std::fs::read_link(&path).map_err(|source| match source.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => Error::NoSuchProcess { pid },
        _ => Error::ProcRead { path, source },
    })
}

/// The resident memory of process `pid` in bytes (`/proc/PID/statm`,
/// field 2, times the page size).
pub fn resident_memory(pid: u32) -> Result<u64, Error> {
    let bytes = read_proc_file(pid, "statm")?;
    let bad = |detail: String| Error::ProcFormat {
        path: proc_path(pid, "statm"),
        detail,
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8".to_string()))?;
    let field = text
        .split_ascii_whitespace()
        .nth(1)
        .ok_or_else(|| bad("field 2 (resident) missing".to_string()))?;
    let pages: u64 = field
        .parse()
        .map_err(|_| bad(format!("field 2 (resident) is {field:?}")))?;
    Ok(pages.saturating_mul(page_size()))
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// One variable of the environment process `pid` was started with
/// (`/proc/PID/environ`; changes the process made to its environment later
/// are not visible). `Ok(None)` when the variable is not set; the value is
/// decoded lossily. Reading another user's process fails with
/// [`Error::ProcRead`] (permission denied).
///
/// A process in the middle of an exec shows no environment, or the start
/// of its old program's cut off (the kernel has not set up the new
/// program's yet, or the old one's went away during the read): the read
/// is made again, 1 ms apart, until it is whole (`/proc/PID/stat` shows
/// the same environment area before and after it, and all of it was
/// read; an empty area twice at the same address, 1 ms apart, since the
/// kernel begins a new program's as an empty one at its final address),
/// at most [`EXEC_SETTLE`], after which it is
/// taken as read. A zombie's, a kernel thread's and an exited main
/// thread's are empty. Measured: a reader of a process that execs in a
/// loop got no environment, or a cut one, in 15% of its plain reads.
pub fn environ_var(pid: u32, name: &str) -> Result<Option<String>, Error> {
    Ok(environ(pid)?.get(name))
}

/// How long [`environ`] waits for a process between two programs.
pub const EXEC_SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// The environment process `pid` was started with, read once for several
/// variables (see [`environ_var`], which waits the same way for a process
/// in the middle of an exec).
pub fn environ(pid: u32) -> Result<Environ, Error> {
    let deadline = std::time::Instant::now() + EXEC_SETTLE;
    // An empty area read once, where it was: the kernel fills a new
    // program's environment from an empty one at its final address, so an
    // empty area is the truth only when read again there 1 ms later (a
    // later read at another address is a later exec's).
    let mut empty_before = None;
    loop {
        let before = read_stat(pid)?;
        // A zombie, or a main thread that exited while other threads run
        // on: no memory to read.
        if matches!(before.state, 'Z' | 'X' | 'x') || before.is_kernel_thread() {
            return Ok(Environ::default());
        }
        let bytes = read_proc_file(pid, "environ")?;
        // Whole, and of one program: the same environment area before and
        // after the read (an exec gives a new one, at another address),
        // read to its end.
        let whole = match (before.env, read_stat(pid)?.env) {
            (Some((start, end)), Some(after)) => {
                let read = end != 0 && after == (start, end) && bytes.len() as u64 == end - start;
                if read && start == end {
                    empty_before.replace(start) == Some(start)
                } else {
                    read
                }
            }
            // A kernel without the fields (before 3.5): as read.
            _ => true,
        };
        if whole || std::time::Instant::now() >= deadline {
            return Ok(Environ(bytes));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A process's environment as [`environ`] read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environ(Vec<u8>);

impl Environ {
    /// The value of `name` (decoded lossily), `None` when it is not set.
    pub fn get(&self, name: &str) -> Option<String> {
        find_var(&self.0, name).map(|value| String::from_utf8_lossy(value).into_owned())
    }

    /// Each `NAME=value` entry, as the process got it.
    pub fn entries(&self) -> impl Iterator<Item = &[u8]> {
        split_nul(&self.0)
    }

    /// True when no variable is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn find_var<'a>(environ: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let name = name.as_bytes();
    split_nul(environ).find_map(|entry| {
        let value = entry.strip_prefix(name)?;
        value.strip_prefix(b"=")
    })
}

/// Splits NUL-terminated strings; a missing final NUL is tolerated.
fn split_nul(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    bytes.split(|&b| b == 0).filter(move |_| !bytes.is_empty())
}

/// The running (not zombie) processes in process group `pgid`, found by
/// scanning /proc. Processes that vanish during the scan are skipped.
pub fn process_group_members(pgid: u32) -> Result<Vec<u32>, Error> {
    Ok(scan_group(pgid)?
        .into_iter()
        .filter(|member| !member.dead)
        .map(|member| member.pid)
        .collect())
}

/// A process found in a process group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupMember {
    pub pid: u32,
    pub ppid: u32,
    /// A zombie.
    pub dead: bool,
}

/// Every process in process group `pgid`, zombies included.
pub(crate) fn scan_group(pgid: u32) -> Result<Vec<GroupMember>, Error> {
    let mut members = Vec::new();
    for pid in all_pids()? {
        match read_stat(pid) {
            Ok(stat) if stat.pgrp == pgid => members.push(GroupMember {
                pid,
                ppid: stat.ppid,
                dead: stat.is_dead(),
            }),
            Ok(_) | Err(Error::NoSuchProcess { .. }) => {}
            // A process we may not read (hidepid) cannot be in a group we
            // started; an unparsable one is not worth failing the scan for.
            Err(Error::ProcRead { .. } | Error::ProcFormat { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(members)
}

/// The pids of every process (not thread) in /proc, in the order /proc
/// lists them (ascending), zombies included. A process may exit, and a new
/// one appear, while the list is read.
pub fn all_pids() -> Result<Vec<u32>, Error> {
    let dir = PathBuf::from("/proc");
    let failed = |source| Error::ProcRead {
        path: dir.clone(),
        source,
    };
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        if let Some(pid) = entry.file_name().to_str().and_then(parse_pid) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// A /proc entry name that is a pid: decimal digits only, not 0.
fn parse_pid(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok().filter(|&pid| pid > 0)
}

/// The session id of process `pid` (field 6 of `/proc/PID/stat`): the pid
/// of the session's leader. A zombie still has one.
pub fn session_id(pid: u32) -> Result<u32, Error> {
    Ok(read_stat(pid)?.session)
}

/// The parent of process `pid` (field 4 of `/proc/PID/stat`; 0 for the
/// kernel's own).
pub fn parent_pid(pid: u32) -> Result<u32, Error> {
    Ok(read_stat(pid)?.ppid)
}

/// The process group of process `pid` (field 5 of `/proc/PID/stat`).
pub fn process_group_id(pid: u32) -> Result<u32, Error> {
    Ok(read_stat(pid)?.pgrp)
}

/// Whether process `pid` exists and leads its session (it called
/// `setsid`, as [`spawn_detached`](crate::spawn_detached) makes its child
/// do). `false` when it cannot be read.
pub fn is_session_leader(pid: u32) -> bool {
    session_id(pid).is_ok_and(|session| session == pid)
}

/// The process that holds a listening TCP socket (IPv4 or IPv6, any local
/// address) on `port`, found through `/proc/net/tcp{,6}` and the
/// `/proc/PID/fd` links. `None` when nothing listens there, or when /proc
/// does not tell: another user's descriptors are hidden without privileges,
/// and another network namespace's sockets are not listed. When several
/// processes share the socket (a fork), the lowest pid is returned.
pub fn listening_socket_holder(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let links: Vec<String> = inodes
        .iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    all_pids().ok()?.into_iter().find(|pid| {
        let Ok(fds) = std::fs::read_dir(proc_path(*pid, "fd")) else {
            return false;
        };
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| links.iter().any(|link| target.as_os_str() == link.as_str()))
        })
    })
}

/// The socket inodes of the listening entries for `port` in the text of a
/// `/proc/net/tcp` or `/proc/net/tcp6` table. Lines that do not parse are
/// skipped.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    /// `st` of a listening socket (`TCP_LISTEN`).
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let (_, hex_port) = local.rsplit_once(':')?;
            let listening_here =
                *state == LISTEN && u16::from_str_radix(hex_port, 16).ok()? == port;
            let inode: u64 = inode.parse().ok()?;
            (listening_here && inode != 0).then_some(inode)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_parens_and_spaces_in_the_command_name() {
        let line = b"4242 (a) b) (c d) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 987654 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let stat = parse_stat(line).unwrap();
        assert_eq!(
            stat,
            Stat {
                state: 'S',
                ppid: 1,
                pgrp: 4242,
                session: 4242,
                flags: 4194560,
                env: None,
                num_threads: 1,
                start_time: 987654
            }
        );
        assert!(!stat.is_kernel_thread());
    }

    #[test]
    fn stat_of_a_kernel_thread() {
        let line = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 1 0 0 0 0 0\n";
        assert!(parse_stat(line).unwrap().is_kernel_thread());
    }

    #[test]
    fn stat_of_a_zombie() {
        let line = b"77 (sh) Z 1 77 77 0 -1 4227084 98 0 1 0 0 0 0 0 20 0 1 0 5555 0 0";
        let stat = parse_stat(line).unwrap();
        assert!(stat.is_dead());
        assert_eq!(stat.start_time, 5555);
    }

    #[test]
    fn an_exited_main_thread_with_live_threads_is_not_dead() {
        let line = b"78 (server) Z 1 78 78 0 -1 4227084 98 0 1 0 0 0 0 0 20 0 5 0 5555 0 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!((stat.state, stat.num_threads), ('Z', 5));
        assert!(!stat.is_dead());
    }

    #[test]
    fn malformed_stat_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"12 (x",
            b"12 (x) S 1 2",
            b"12 (x) S 1 a 3 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 9",
            b"12 (x) \xff",
            b"12 (x) SS 1 2 3 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 9",
        ] {
            assert!(
                parse_stat(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn environ_lookup_matches_whole_names_only() {
        let env = b"PATHX=no\0PATH=/bin:/usr/bin\0EMPTY=\0NOEQ\0A=b=c\0";
        assert_eq!(find_var(env, "PATH"), Some(&b"/bin:/usr/bin"[..]));
        assert_eq!(find_var(env, "EMPTY"), Some(&b""[..]));
        assert_eq!(find_var(env, "A"), Some(&b"b=c"[..]));
        assert_eq!(find_var(env, "NOEQ"), None);
        assert_eq!(find_var(env, "PAT"), None);
        assert_eq!(find_var(b"", "PATH"), None);
    }

    #[test]
    fn listening_entries_of_tcp_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:6D9B 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0
   1: 0100007F:6D9B 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0
   3: 0100007F:6D9B 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 0 1
   4: garbage
";
        // 0x6D9B = 28059: the listening entry, not the connection, not a
        // zero inode (a socket being torn down).
        assert_eq!(listening_inodes(tcp, 28059), vec![123456]);
        assert_eq!(listening_inodes(tcp, 22), vec![999]);
        assert_eq!(listening_inodes(tcp, 80), Vec::<u64>::new());
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:6D9B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listening_inodes(tcp6, 28059), vec![4242]);
        assert_eq!(listening_inodes("", 28059), Vec::<u64>::new());
    }

    #[test]
    fn pid_names() {
        assert_eq!(parse_pid("1"), Some(1));
        assert_eq!(parse_pid("4194304"), Some(4_194_304));
        for name in [
            "",
            "0",
            "self",
            "+1",
            "-1",
            "1a",
            "99999999999",
            "thread-self",
        ] {
            assert_eq!(parse_pid(name), None, "{name:?}");
        }
    }

    #[test]
    fn pids_sessions_and_the_holder_of_a_port() {
        let me = std::process::id();
        let pids = all_pids().unwrap();
        assert!(pids.contains(&me));
        assert!(pids.contains(&1));
        assert_eq!(session_id(me).unwrap(), read_stat(me).unwrap().session);
        assert!(matches!(
            session_id(u32::MAX),
            Err(Error::NoSuchProcess { .. })
        ));
        assert!(!is_session_leader(u32::MAX));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(listening_socket_holder(port), Some(me));
        // A connected socket on the same port is not a listener.
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        drop(listener);
        // Not `None`: a child that another test is spawning in this moment
        // holds a copy of the listener from its fork until its exec closes
        // it, and is then rightly found holding it.
        assert_ne!(listening_socket_holder(port), Some(me));
        drop((client, server_side));

        let listener6 = match std::net::TcpListener::bind("[::1]:0") {
            Ok(listener) => listener,
            Err(_) => return, // no IPv6 here
        };
        let port = listener6.local_addr().unwrap().port();
        assert_eq!(listening_socket_holder(port), Some(me));
    }

    #[test]
    fn nul_splitting() {
        assert_eq!(split_nul(b"").count(), 0);
        let args: Vec<&[u8]> = split_nul(b"sleep\x001000\0").collect();
        assert_eq!(args, vec![&b"sleep"[..], &b"1000"[..]]);
        let args: Vec<&[u8]> = split_nul(b"a\0\0b").collect();
        assert_eq!(args, vec![&b"a"[..], &b""[..], &b"b"[..]]);
    }
}
