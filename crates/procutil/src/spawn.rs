//! Starting a detached child: its own session, a clean signal state, stdin
//! from /dev/null, output to a file, and no inherited descriptors.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Error;
use crate::child::Child;
use crate::pidfd::Pidfd;
use crate::procfs::{ProcessIdentity, boot_id, read_stat};

/// Where the child's stdout and stderr go (both to the same place).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// `/dev/null`.
    #[default]
    Null,
    /// A file opened with `O_APPEND | O_CREAT` (mode 0600 when created), so
    /// that earlier contents are kept and concurrent writers do not overwrite
    /// each other. It must be a regular file: a FIFO, a socket or a symlink
    /// there is refused ([`Error::OutputFile`](crate::Error::OutputFile)),
    /// never waited on or followed.
    AppendTo(PathBuf),
}

/// What to start and how: a builder for [`spawn_detached`].
///
/// By default the child inherits the caller's environment and working
/// directory, and its stdout and stderr go to `/dev/null`.
#[derive(Clone, Debug)]
pub struct SpawnSpec {
    program: PathBuf,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env_clear: bool,
    /// In order; `None` removes the variable.
    env: Vec<(OsString, Option<OsString>)>,
    output: Output,
}

impl SpawnSpec {
    /// Starts `program`: a path, or a bare name looked up in the child's
    /// `PATH` (as `execvp` does).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        SpawnSpec {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            env_clear: false,
            env: Vec::new(),
            output: Output::Null,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the child in `dir`. A relative program path containing a slash
    /// is then resolved against `dir`.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// Starts the child with an empty environment, plus what is set with
    /// [`env`](Self::env) after this call (earlier settings are dropped).
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// Where stdout and stderr go.
    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// The program to start.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The working directory, if one is set.
    pub fn get_cwd(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }
}

/// Starts a detached child process.
///
/// The child leads a new session (and so its own process group, whose id is
/// its pid), has every signal disposition that can be reset at `SIG_DFL` and
/// an empty signal mask, reads stdin from `/dev/null`, writes stdout and
/// stderr as [`SpawnSpec::output`] says, and inherits no descriptor but 0, 1
/// and 2. Between fork and exec only async-signal-safe calls run.
///
/// Returns once the program has been executed. If the caller keeps running it
/// can wait for and reap the child through the [`Child`]; if the caller exits
/// the child keeps running. Dropping the `Child` neither kills nor waits.
///
/// Fails with [`Error::Cwd`] when the working directory is unusable,
/// [`Error::Exec`] when the program cannot be executed and
/// [`Error::OutputFile`] when the output file cannot be opened; each names
/// the program and the path concerned.
pub fn spawn_detached(spec: &SpawnSpec) -> Result<Child, Error> {
    let program = &spec.program;
    if let Some(dir) = &spec.cwd {
        // Checked here because exec reports a bad cwd and a missing program
        // with the same errno.
        check_dir(dir).map_err(|source| Error::Cwd {
            program: program.clone(),
            cwd: dir.clone(),
            source,
        })?;
    }

    let mut command = Command::new(program);
    command.args(&spec.args);
    if let Some(dir) = &spec.cwd {
        command.current_dir(dir);
    }
    if spec.env_clear {
        command.env_clear();
    }
    for (key, value) in &spec.env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command.stdin(Stdio::null());
    match &spec.output {
        Output::Null => {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        Output::AppendTo(path) => {
            let open_error = |source| Error::OutputFile {
                program: program.clone(),
                path: path.clone(),
                source,
            };
            let stdout = open_append(path).map_err(open_error)?;
            let stderr = stdout.try_clone().map_err(open_error)?;
            command.stdout(stdout).stderr(stderr);
        }
    }
    // SAFETY: the closure only makes async-signal-safe system calls and does
    // not allocate; see `prepare_child`.
    unsafe {
        command.pre_exec(prepare_child);
    }

    let std_child = command.spawn().map_err(|source| {
        // The directory was fine a moment ago; if it is not now, that is the
        // more useful explanation.
        match &spec.cwd {
            Some(dir) if check_dir(dir).is_err() => Error::Cwd {
                program: program.clone(),
                cwd: dir.clone(),
                source,
            },
            _ => Error::Exec {
                program: program.clone(),
                cwd: spec.cwd.clone(),
                source,
            },
        }
    })?;
    let pid = std_child.id();
    // The std handle is dropped without waiting: from here on the pid is
    // managed by our own `Child`, which reaps with waitpid.
    drop(std_child);

    // Our unreaped child cannot be replaced by another process with the same
    // pid, so neither the pidfd nor the start time can refer to anyone else.
    let pidfd = Pidfd::open(pid).ok().flatten();
    let identity = read_stat(pid).and_then(|stat| {
        Ok(ProcessIdentity {
            pid,
            start_time: stat.start_time,
            boot_id: boot_id()?,
        })
    });
    match identity {
        Ok(identity) => Ok(Child::new(identity, pidfd)),
        Err(err) => {
            // Without an identity nobody could manage the child safely, so it
            // must not be left running.
            kill_and_reap(pid);
            Err(err)
        }
    }
}

fn check_dir(dir: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(libc::ENOTDIR))
    }
}

/// Opens the output file for appending without blocking and without
/// following a symlink (`O_NOFOLLOW | O_NONBLOCK`): a FIFO there would block
/// the open until someone reads it, and a symlink would send the child's
/// output (and the file's creation) anywhere. Only a regular file is
/// accepted (checked with fstat after the open); the descriptor the child
/// gets is blocking again.
fn open_append(path: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let refuse = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file; remove it and try again"),
        )
    };
    // What is not a regular file is refused before it is opened at all.
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(refuse(describe_file_type(path, &meta))),
        _ => {}
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            // ELOOP: a symlink; ENXIO: a FIFO nobody reads, or a socket.
            Some(libc::ELOOP | libc::ENXIO) => match std::fs::symlink_metadata(path) {
                Ok(meta) if !meta.is_file() => refuse(describe_file_type(path, &meta)),
                _ => err,
            },
            _ => err,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse(describe_file_type(path, &meta)));
    }
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// "a FIFO", "a symlink (to X)", ... for an error message.
fn describe_file_type(path: &Path, meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_symlink() {
        return match std::fs::read_link(path) {
            Ok(target) => format!("a symlink (to {})", target.display()),
            Err(_) => "a symlink".to_string(),
        };
    }
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "something else"
    };
    what.to_string()
}

fn kill_and_reap(pid: u32) {
    if let Ok(raw) = libc::pid_t::try_from(pid) {
        // SAFETY: plain system calls on our own unreaped child.
        unsafe {
            libc::kill(raw, libc::SIGKILL);
            let mut status = 0;
            while libc::waitpid(raw, &mut status, 0) < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
    }
}

/// The highest signal number to reset. Linux has 64 signals (`_NSIG` 65);
/// elsewhere 32 covers the classic set.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MAX_SIGNAL: libc::c_int = 64;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const MAX_SIGNAL: libc::c_int = 32;

/// Runs in the child between fork and exec, after std has set up stdio and
/// the working directory. Only async-signal-safe system calls, no allocation:
/// another thread of the parent may have held the allocator's lock at fork.
fn prepare_child() -> io::Result<()> {
    // A new session: the child leads its own process group and has no
    // controlling terminal, so a terminal's signals and our group's signals
    // do not reach it, and it can be signalled as a group.
    // SAFETY: setsid has no preconditions; it cannot fail in a fresh child,
    // which is never a group leader.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }

    // Ignored signals stay ignored across exec (the Rust runtime ignores
    // SIGPIPE, for one); reset them all.
    reset_signal_dispositions();

    // An empty signal mask (std does this too; it is cheap to be sure).
    // SAFETY: set is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }

    // Nothing above 2 may survive exec. The descriptors are marked
    // close-on-exec rather than closed, because std's own pipe that reports
    // an exec failure to the parent is among them (and already CLOEXEC).
    mark_cloexec_from(3);
    Ok(())
}

/// Sets every signal's disposition to `SIG_DFL`. SIGKILL and SIGSTOP refuse
/// with EINVAL, which is fine.
fn reset_signal_dispositions() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // The raw system call, because libc refuses to touch the signals it
        // reserves for itself (32 and 33 in glibc), and an inherited SIG_IGN
        // on those would survive exec. All zeros is, in the kernel's struct
        // whatever its field order, SIG_DFL with no flags and an empty mask;
        // 64 bytes cover it on every architecture.
        let default_action = [0u64; 8];
        let sigset_size: libc::size_t = if cfg!(any(target_arch = "mips", target_arch = "mips64")) {
            16
        } else {
            8
        };
        for signal in 1..=MAX_SIGNAL {
            // SAFETY: a valid pointer to a zeroed kernel sigaction; the old
            // action is not requested; failure is deliberately ignored.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<libc::c_void>(),
                    sigset_size,
                );
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        // SAFETY: a zeroed sigaction is a valid value; SIG_DFL with no flags.
        let mut default_action: libc::sigaction = unsafe { std::mem::zeroed() };
        default_action.sa_sigaction = libc::SIG_DFL;
        for signal in 1..=MAX_SIGNAL {
            // SAFETY: valid pointers; failure is deliberately ignored.
            unsafe {
                libc::sigaction(signal, &default_action, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Lets a test run the descriptor listing of kernels without
    /// `CLOSE_RANGE_CLOEXEC` (before 5.11). Read in the child after fork: a
    /// const-initialised thread-local is a plain memory read there.
    pub(crate) static NO_CLOSE_RANGE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// With `NO_CLOSE_RANGE`, lets a test run the loop used when
    /// /proc/self/fd cannot be read either.
    pub(crate) static NO_FD_LISTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Sets `FD_CLOEXEC` on every descriptor >= `first`. Runs in the child
/// after fork, so only system calls, no allocation.
///
/// `close_range` (Linux 5.11+) does it in one call. Before that, the open
/// descriptors are listed from /proc/self/fd with raw `getdents64` calls
/// into a buffer on the stack: that is exact, because the child's descriptor
/// table is its own copy that no other thread changes, and it costs one call
/// per open descriptor. (Listing them in the parent before fork would miss
/// what other threads open meanwhile; trying every number up to the
/// open-files limit costs up to a billion calls where that limit is high.)
/// Only when /proc/self/fd cannot be opened does it fall back to that loop:
/// without /proc (where [`spawn_detached`] fails anyway, unable to read the
/// child's identity), or when every descriptor number below the limit is
/// taken, so that the loop covers exactly the open ones.
fn mark_cloexec_from(first: libc::c_int) {
    #[cfg(test)]
    let (use_close_range, use_listing) = (!NO_CLOSE_RANGE.get(), !NO_FD_LISTING.get());
    #[cfg(not(test))]
    let (use_close_range, use_listing) = (true, true);
    #[cfg(target_os = "linux")]
    {
        if use_close_range {
            let first = libc::c_uint::try_from(first).unwrap_or(3);
            // SAFETY: plain system call (Linux 5.11+); on failure we fall back.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    first,
                    libc::c_uint::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                )
            };
            if rc == 0 {
                return;
            }
        }
        if use_listing && mark_listed_cloexec_from(first) {
            return;
        }
    }
    let _ = (use_close_range, use_listing);
    // Fallback: every descriptor number up to the open-files limit.
    // SAFETY: rlimit is a valid out pointer.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0
        && limit.rlim_cur != libc::RLIM_INFINITY
    {
        libc::c_int::try_from(limit.rlim_cur).unwrap_or(libc::c_int::MAX)
    } else {
        // Unlimited or unknown: a generous bound rather than four billion calls.
        1 << 20
    };
    for fd in first..max {
        set_cloexec(fd);
    }
}

/// Sets `FD_CLOEXEC` on `fd` unless it is set already. A number that is not
/// open just gets EBADF.
fn set_cloexec(fd: libc::c_int) {
    // SAFETY: fcntl with integer arguments on any number is harmless.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

/// A `getdents64` buffer, aligned as the kernel's records are.
#[cfg(target_os = "linux")]
#[repr(C, align(8))]
struct DirentBuffer([u8; 4096]);

/// Marks the descriptors >= `first` listed in /proc/self/fd close-on-exec.
/// `false` when the directory cannot be opened or read to the end. Only
/// system calls and no allocation or panic (every access is checked), as
/// [`mark_cloexec_from`] needs.
#[cfg(target_os = "linux")]
fn mark_listed_cloexec_from(first: libc::c_int) -> bool {
    // SAFETY: a valid NUL-terminated path.
    let dir = unsafe {
        libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return false;
    }
    let mut buffer = DirentBuffer([0; 4096]);
    let complete = loop {
        // SAFETY: the buffer is valid for writes of its whole length.
        let read = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir,
                buffer.0.as_mut_ptr(),
                buffer.0.len(),
            )
        };
        let Ok(read) = usize::try_from(read) else {
            break false;
        };
        if read == 0 {
            break true;
        }
        let records = buffer.0.get(..read).unwrap_or(&[]);
        for name in dirent_names(records) {
            if let Some(fd) = parse_fd(name)
                && fd >= first
                && fd != dir
            {
                set_cloexec(fd);
            }
        }
    };
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(dir) };
    complete
}

/// The names in a buffer of `linux_dirent64` records (inode u64, offset
/// i64, record length u16, type u8, then the NUL-terminated name).
#[cfg(target_os = "linux")]
fn dirent_names(mut records: &[u8]) -> impl Iterator<Item = &[u8]> {
    const NAME_OFFSET: usize = 19;
    std::iter::from_fn(move || {
        let length = match records.get(16..18) {
            Some(&[low, high]) => usize::from(u16::from_ne_bytes([low, high])),
            _ => return None,
        };
        let record = records.get(..length).filter(|_| length > NAME_OFFSET)?;
        records = &records[length..];
        let name = &record[NAME_OFFSET..];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        Some(&name[..end])
    })
}

/// A descriptor number from a /proc/self/fd name; `None` for "." and "..".
#[cfg(target_os = "linux")]
fn parse_fd(name: &[u8]) -> Option<libc::c_int> {
    if name.is_empty() {
        return None;
    }
    name.iter().try_fold(0 as libc::c_int, |fd, &byte| {
        let digit = libc::c_int::from(byte.checked_sub(b'0').filter(|d| *d <= 9)?);
        fd.checked_mul(10)?.checked_add(digit)
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Spawns `true` with its output appended to `path`, on a thread, and
    /// fails when that is still blocked after 10 s (opening a FIFO for
    /// writing waits for a reader; the thread is left behind).
    fn spawn_appending_to(path: &Path) -> Result<Child, Error> {
        let spec = SpawnSpec::new("true").output(Output::AppendTo(path.to_path_buf()));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(spawn_detached(&spec));
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("spawn was still blocked on the output file after 10 s")
    }

    #[test]
    fn an_output_fifo_or_symlink_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.log");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let err = spawn_appending_to(&fifo).unwrap_err();
        assert!(matches!(err, Error::OutputFile { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("a FIFO") && text.contains("fifo.log"),
            "{text}"
        );

        let target = dir.path().join("elsewhere");
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = spawn_appending_to(&link).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("a symlink") && text.contains("link.log"),
            "{text}"
        );
        assert!(!target.exists(), "the link's target was created");

        // A plain file is appended to.
        let log = dir.path().join("plain.log");
        std::fs::write(&log, "kept\n").unwrap();
        let child = spawn_appending_to(&log).unwrap();
        child
            .wait_timeout(std::time::Duration::from_secs(10))
            .unwrap()
            .expect("true exits");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "kept\n");
    }

    #[test]
    fn descriptor_names() {
        assert_eq!(parse_fd(b"0"), Some(0));
        assert_eq!(parse_fd(b"1048575"), Some(1_048_575));
        for name in [&b""[..], b".", b"..", b"1a", b"-1", b"99999999999"] {
            assert_eq!(parse_fd(name), None, "{:?}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn dirent_records_are_split_and_a_bad_length_ends_the_walk() {
        fn record(name: &[u8]) -> Vec<u8> {
            let length = (19 + name.len() + 1).next_multiple_of(8);
            let mut record = vec![0u8; length];
            record[16..18].copy_from_slice(&u16::try_from(length).unwrap().to_ne_bytes());
            record[19..19 + name.len()].copy_from_slice(name);
            record
        }
        let mut buffer = [record(b"."), record(b".."), record(b"3"), record(b"12345")].concat();
        let names: Vec<&[u8]> = dirent_names(&buffer).collect();
        assert_eq!(names, [&b"."[..], b"..", b"3", b"12345"]);

        // A length past the end or too short to hold a name stops the walk.
        let third = 2 * 24 + 16;
        buffer[third..third + 2].copy_from_slice(&999u16.to_ne_bytes());
        assert_eq!(dirent_names(&buffer).count(), 2);
        buffer[third..third + 2].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(dirent_names(&buffer).count(), 2);
        assert_eq!(dirent_names(&buffer[..10]).count(), 0);
    }
}
