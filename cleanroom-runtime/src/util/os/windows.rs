//! Windows: `OpenProcess` and `GetProcessTimes` for liveness and start
//! times, the Toolhelp snapshot for a parent's pid. Checked with `cargo
//! check --target x86_64-pc-windows-gnu` here, not run (docs/environments.md):
//! the calls are kept this small so that a reader can check them against
//! the Win32 documentation.
#![allow(unsafe_code)]

use windows_sys::Win32::Foundation::{CloseHandle, GetLastError, ERROR_ACCESS_DENIED, FILETIME, HANDLE, WAIT_TIMEOUT};
use windows_sys::Win32::System::Threading::{
    GetProcessTimes, OpenProcess, WaitForSingleObject, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
};

/// Sockets are files naming a loopback port there: a path's limit.
pub(super) const SUN_PATH_LEN: usize = 260;

/// A number for this account: its domain and name, hashed. Windows has no
/// uid; this one keeps runtime directories and owner labels apart per user.
pub(super) fn uid() -> u32 {
    let who = format!(
        "{}\\{}",
        std::env::var("USERDOMAIN").unwrap_or_default(),
        std::env::var("USERNAME").unwrap_or_default()
    );
    crate::util::hash::fnv1a(who.as_bytes(), crate::util::hash::FNV_OFFSET) as u32
}

/// The process `pid`, opened to be asked about; closed on drop.
struct Process(HANDLE);

impl Process {
    /// `Err(true)`: it exists and may not be opened (another user's);
    /// `Err(false)`: there is no such process.
    fn open(pid: u32) -> Result<Process, bool> {
        // SAFETY: plain arguments; a null handle is the failure, checked.
        let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE, 0, pid) };
        if handle.is_null() {
            // SAFETY: no arguments; reads this thread's last error.
            return Err(unsafe { GetLastError() } == ERROR_ACCESS_DENIED);
        }
        Ok(Process(handle))
    }

    /// Whether it has not exited (an exited process stays openable while a
    /// handle to it is held): its handle is not signalled yet. Not its exit
    /// code, which a process may have set to `STILL_ACTIVE` (259) itself.
    fn running(&self) -> bool {
        // SAFETY: a valid handle opened with `PROCESS_SYNCHRONIZE`; a zero
        // timeout only asks.
        unsafe { WaitForSingleObject(self.0, 0) == WAIT_TIMEOUT }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by `open` and is closed once.
        unsafe { CloseHandle(self.0) };
    }
}

pub(super) fn process_exists(pid: u32) -> bool {
    match Process::open(pid) {
        Ok(process) => process.running(),
        Err(exists) => exists,
    }
}

/// Its creation time (100 ns since 1601); `None` when it is gone, has
/// exited, or cannot be opened.
pub(super) fn process_start(pid: u32) -> Option<u64> {
    let process = Process::open(pid).ok()?;
    if !process.running() {
        return None;
    }
    let zero = FILETIME { dwLowDateTime: 0, dwHighDateTime: 0 };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: a valid handle and four out-parameters of the type it takes.
    let ok = unsafe { GetProcessTimes(process.0, &mut created, &mut exited, &mut kernel, &mut user) } != 0;
    ok.then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
}

/// The parent's pid, from a snapshot of the system's processes.
pub(super) fn parent_pid() -> Option<u32> {
    use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
    };
    let me = std::process::id();
    // SAFETY: plain arguments; an invalid handle is the failure, checked.
    let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snapshot == INVALID_HANDLE_VALUE {
        return None;
    }
    let snapshot = Process(snapshot);
    let mut entry = PROCESSENTRY32W { dwSize: std::mem::size_of::<PROCESSENTRY32W>() as u32, ..Default::default() };
    // SAFETY: a valid snapshot and an entry whose `dwSize` is set, as the
    // calls require.
    let mut more = unsafe { Process32FirstW(snapshot.0, &mut entry) } != 0;
    while more {
        if entry.th32ProcessID == me {
            return Some(entry.th32ParentProcessID);
        }
        // SAFETY: as above.
        more = unsafe { Process32NextW(snapshot.0, &mut entry) } != 0;
    }
    None
}

/// A Windows process is never in a (Linux) container.
pub(super) fn own_container_id() -> Option<String> {
    None
}

pub(super) fn host_name() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}

/// Not told: pids are never compared across processes that may not share
/// them.
pub(super) fn pid_space() -> Option<String> {
    None
}
