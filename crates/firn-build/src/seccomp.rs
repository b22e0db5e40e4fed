//! The system-call filter CppNix installs for builders (`filter-syscalls`, on by default): a
//! builder cannot make setuid or setgid files (`chmod`, `fchmod`, `fchmodat` and
//! `fchmodat2` with `S_ISUID` or `S_ISGID` in the mode fail with `EPERM`), nor give a file
//! extended attributes or ACLs, which a NAR cannot hold (`setxattr`, `lsetxattr` and
//! `fsetxattr` fail with `ENOTSUP`). Without `allow-new-privileges`, `no_new_privs` is set
//! too, so setuid programs and file capabilities give nothing.
//!
//! The filter is a classic BPF program written here (no libseccomp): it dispatches on the
//! architecture of the call (x86_64 with its x32 calls and i386; aarch64 and 32-bit ARM, the
//! ones CppNix adds to its filter) and then on the call number. It is built before the
//! builder's process is made and installed by that process just before `exec`, with system
//! calls only.

use libc::sock_filter;

/// `AUDIT_ARCH_*` of `<linux/audit.h>`: the ELF machine with the 64-bit and little-endian
/// flags.
const ARCH_X86_64: u32 = 0xc000_003e;
const ARCH_I386: u32 = 0x4000_0003;
const ARCH_AARCH64: u32 = 0xc000_00b7;
const ARCH_ARM: u32 = 0x4000_0028;
/// x32 calls are made under `ARCH_X86_64` with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// What happens to a call the filter looks at.
#[derive(Clone, Copy)]
enum Rule {
    /// A mode argument (its index): `EPERM` when it has `S_ISUID` or `S_ISGID`.
    Mode(u32),
    /// `ENOTSUP`, whatever the arguments.
    NotSupported,
}

/// One architecture's calls: (number, rule).
struct Table {
    arch: u32,
    /// Numbers are compared with the x32 bit cleared (x86_64's x32 calls share its numbers
    /// for these).
    mask_x32: bool,
    calls: &'static [(u32, Rule)],
}

const TABLES: &[Table] = &[
    Table {
        arch: ARCH_X86_64,
        mask_x32: true,
        calls: &[
            (90, Rule::Mode(1)),       // chmod
            (91, Rule::Mode(1)),       // fchmod
            (268, Rule::Mode(2)),      // fchmodat
            (452, Rule::Mode(2)),      // fchmodat2
            (188, Rule::NotSupported), // setxattr
            (189, Rule::NotSupported), // lsetxattr
            (190, Rule::NotSupported), // fsetxattr
        ],
    },
    Table {
        arch: ARCH_I386,
        mask_x32: false,
        calls: &[
            (15, Rule::Mode(1)),
            (94, Rule::Mode(1)),
            (306, Rule::Mode(2)),
            (452, Rule::Mode(2)),
            (226, Rule::NotSupported),
            (227, Rule::NotSupported),
            (228, Rule::NotSupported),
        ],
    },
    Table {
        arch: ARCH_AARCH64,
        mask_x32: false,
        calls: &[
            // (no `chmod` on aarch64)
            (52, Rule::Mode(1)),
            (53, Rule::Mode(2)),
            (452, Rule::Mode(2)),
            (5, Rule::NotSupported),
            (6, Rule::NotSupported),
            (7, Rule::NotSupported),
        ],
    },
    Table {
        arch: ARCH_ARM,
        mask_x32: false,
        calls: &[
            (15, Rule::Mode(1)),
            (94, Rule::Mode(1)),
            (333, Rule::Mode(2)),
            (452, Rule::Mode(2)),
            (226, Rule::NotSupported),
            (227, Rule::NotSupported),
            (228, Rule::NotSupported),
        ],
    },
];

// Offsets in `struct seccomp_data`: nr (u32), arch (u32), instruction pointer (u64), args.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// Where the low 32 bits of argument `i` are (the mode is a 32-bit `mode_t`).
fn arg_low(i: u32) -> u32 {
    let base = OFF_ARGS + 8 * i;
    if cfg!(target_endian = "big") {
        base + 4
    } else {
        base
    }
}

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const LD_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JSET: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const RET: u32 = libc::BPF_RET | libc::BPF_K;
const AND: u32 = libc::BPF_ALU | libc::BPF_AND | libc::BPF_K;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const SETID_BITS: u32 = libc::S_ISUID | libc::S_ISGID;

/// The handler of one rule: what runs once the call number matched (always returns).
fn handler(rule: Rule) -> Vec<sock_filter> {
    match rule {
        Rule::Mode(i) => vec![
            stmt(LD_ABS, arg_low(i)),
            jump(JSET, SETID_BITS, 0, 1),
            stmt(RET, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
            stmt(RET, ALLOW),
        ],
        Rule::NotSupported => vec![stmt(RET, libc::SECCOMP_RET_ERRNO | libc::ENOTSUP as u32)],
    }
}

/// One architecture's part: the number compared with each call's, its handler after it.
fn arch_block(t: &Table) -> Vec<sock_filter> {
    let mut b = vec![stmt(LD_ABS, OFF_NR)];
    if t.mask_x32 {
        b.push(stmt(AND, !X32_SYSCALL_BIT));
    }
    for (nr, rule) in t.calls {
        let h = handler(*rule);
        // Short programs: every jump fits in a byte.
        b.push(jump(JEQ, *nr, 0, h.len() as u8));
        b.extend(h);
    }
    b.push(stmt(RET, ALLOW));
    b
}

/// The whole program. A call of an architecture not listed kills the builder, as
/// libseccomp's filters do.
fn program() -> Vec<sock_filter> {
    let mut p = vec![stmt(LD_ABS, OFF_ARCH)];
    for t in TABLES {
        let block = arch_block(t);
        p.push(jump(JEQ, t.arch, 0, block.len() as u8));
        p.extend(block);
    }
    p.push(stmt(RET, libc::SECCOMP_RET_KILL_PROCESS));
    p
}

/// A filter ready to be installed in a builder's process.
#[derive(Clone, Debug)]
pub struct Filter {
    prog: Vec<sock_filter>,
    /// Set `no_new_privs` first (unless `allow-new-privileges`).
    no_new_privs: bool,
}

impl Filter {
    /// The filter for this machine, or None where firn does not know the system calls'
    /// numbers (CppNix refuses to build there unless `filter-syscalls` is off; firn builds
    /// unfiltered).
    pub fn new(allow_new_privileges: bool) -> Option<Filter> {
        if !cfg!(any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "aarch64",
            target_arch = "arm"
        )) {
            return None;
        }
        Some(Filter {
            prog: program(),
            no_new_privs: !allow_new_privileges,
        })
    }

    /// Install the filter in the calling thread (inherited by what it executes). Only system
    /// calls, so it can run between `fork`/`clone` and `exec`; the error is an `errno`.
    ///
    /// # Safety
    /// Meant for a builder's process before its `exec`: every later system call of the
    /// thread is filtered.
    pub unsafe fn install(&self) -> Result<(), i32> {
        let errno = || {
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
        };
        if self.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 {
            return Err(errno());
        }
        let fprog = libc::sock_fprog {
            len: self.prog.len() as u16,
            filter: self.prog.as_ptr() as *mut sock_filter,
        };
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
            0,
            0,
        ) == -1
        {
            return Err(errno());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_fit_and_end_in_returns() {
        let p = program();
        assert!(p.len() < 256, "{} instructions", p.len());
        // Every jump lands inside the program.
        for (i, ins) in p.iter().enumerate() {
            if u32::from(ins.code) & 0x07 == libc::BPF_JMP {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < p.len());
            }
        }
        assert_eq!(u32::from(p[p.len() - 1].code), RET);
    }

    /// In a forked child: setuid/setgid modes and extended attributes are refused, other
    /// modes are not.
    #[test]
    fn refuses_setid_modes_and_xattrs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        let c = std::ffi::CString::new(file.to_string_lossy().as_bytes()).expect("no NUL");
        let filter = Filter::new(false).expect("a known architecture");
        // Whether the filesystem takes extended attributes at all (else their refusal shows
        // nothing).
        // SAFETY: `c` and the value are valid for the call.
        let xattrs = unsafe {
            libc::setxattr(c.as_ptr(), c"user.y".as_ptr(), b"1".as_ptr().cast(), 1, 0) == 0
        };
        // SAFETY: the child makes system calls only, then exits.
        let pid = unsafe { libc::fork() };
        assert!(pid != -1, "fork");
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                let code = (|| {
                    if filter.install().is_err() {
                        return 10;
                    }
                    let err = || *libc::__errno_location();
                    if libc::chmod(c.as_ptr(), 0o4755) != -1 || err() != libc::EPERM {
                        return 11;
                    }
                    if libc::chmod(c.as_ptr(), 0o2755) != -1 || err() != libc::EPERM {
                        return 12;
                    }
                    if libc::fchmodat(libc::AT_FDCWD, c.as_ptr(), 0o6644, 0) != -1
                        || err() != libc::EPERM
                    {
                        return 13;
                    }
                    let fd = libc::open(c.as_ptr(), libc::O_RDONLY);
                    if fd == -1 {
                        return 14;
                    }
                    if libc::fchmod(fd, 0o4444) != -1 || err() != libc::EPERM {
                        return 15;
                    }
                    if libc::chmod(c.as_ptr(), 0o755) != 0 {
                        return 16;
                    }
                    let v = b"1";
                    let r = libc::setxattr(c.as_ptr(), c"user.x".as_ptr(), v.as_ptr().cast(), 1, 0);
                    if xattrs && (r != -1 || err() != libc::ENOTSUP) {
                        return 17;
                    }
                    if libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1 {
                        return 18;
                    }
                    0
                })();
                libc::_exit(code);
            }
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "the step that failed");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
        assert_eq!(mode & 0o7777, 0o755);
    }
}
