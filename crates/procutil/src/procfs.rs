//! Reading processes from /proc: identity, state, command line, memory and
//! environment.

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
pub fn environ_var(pid: u32, name: &str) -> Result<Option<String>, Error> {
    let bytes = read_proc_file(pid, "environ")?;
    Ok(find_var(&bytes, name).map(|value| String::from_utf8_lossy(value).into_owned()))
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
    let dir = PathBuf::from("/proc");
    let entries = std::fs::read_dir(&dir).map_err(|source| Error::ProcRead {
        path: dir.clone(),
        source,
    })?;
    let mut members = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::ProcRead {
            path: dir.clone(),
            source,
        })?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
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
                num_threads: 1,
                start_time: 987654
            }
        );
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
    fn nul_splitting() {
        assert_eq!(split_nul(b"").count(), 0);
        let args: Vec<&[u8]> = split_nul(b"sleep\x001000\0").collect();
        assert_eq!(args, vec![&b"sleep"[..], &b"1000"[..]]);
        let args: Vec<&[u8]> = split_nul(b"a\0\0b").collect();
        assert_eq!(args, vec![&b"a"[..], &b""[..], &b"b"[..]]);
    }
}
