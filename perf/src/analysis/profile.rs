//! Where a server's CPU goes, by category: the samples of a `perf record -e cpu-clock -g -p
//! SERVER` taken during a load run (`perf script -F ip,sym,dso`), each put in one of five
//! categories, scaled to the server's CPU µs per echoed message from the same run.
//! compare.sh's `--profile` runs it for every server; report.html draws the stacked bars.
//!
//! A sample belongs to the first frame of its call chain, from the leaf up, that a rule
//! names: a spin-lock release or an RCU helper says nothing by itself (and cpu-clock samples
//! taken with interrupts off land on the unlock that turns them back on), so the caller that
//! took the lock (a wake-up, a socket queue) decides.
//!
//! The categories are what an echo server can and cannot change: the TCP/IP stack and its
//! socket buffers (both servers pay it, and on loopback the peer's receive path too),
//! scheduling and wake-ups, the I/O interface (syscall entry, epoll readiness, io_uring
//! submission, completion and task work), the server's own user-space code, and the rest.

use serde::{Deserialize, Serialize};

/// One category of CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// TCP, IP, sockets, skb allocation and copies, softirq and loopback delivery.
    TcpIp,
    /// The scheduler, wake-ups, context switches, timers.
    Scheduling,
    /// Syscall entry and exit, epoll, io_uring (submission, completion, task work), file refs.
    Interface,
    /// The server's own code and its libraries, in user space.
    User,
    /// Everything else in the kernel.
    Other,
}

impl Category {
    /// Every category, in the order the report stacks them.
    pub const ALL: [Category; 5] = [
        Category::TcpIp,
        Category::Scheduling,
        Category::Interface,
        Category::User,
        Category::Other,
    ];

    /// What the report calls it.
    pub fn label(self) -> &'static str {
        match self {
            Category::TcpIp => "TCP/IP and skb",
            Category::Scheduling => "scheduling and wake-ups",
            Category::Interface => "I/O interface",
            Category::User => "user space",
            Category::Other => "other kernel",
        }
    }
}

/// Symbol prefixes by category, first match wins: the one place the categories are defined.
/// The interface comes before scheduling so that epoll's and io_uring's own wake-up callbacks
/// count as interface.
const RULES: &[(Category, &[&str])] = &[
    (
        Category::Interface,
        &[
            "io_",
            "__io_",
            "io_uring",
            "tctx_task_work",
            "task_work_run",
            "ep_",
            "do_epoll",
            "__x64_sys_",
            "__sys_",
            "do_syscall",
            "entry_SYSCALL",
            "syscall_",
            "ksys_",
            "__fget",
            "fget",
            "fput",
            "__fdget",
            "fdget",
            "sock_from_file",
            "import_",
            "exit_to_user",
            "__rseq",
            "rseq_",
            "fpregs",
            "restore_fpregs",
            "switch_fpu",
        ],
    ),
    (
        Category::Scheduling,
        &[
            "schedule",
            "__schedule",
            "try_to_wake_up",
            "ttwu",
            "__wake_up",
            "wake_up",
            "finish_task_switch",
            "pick_next",
            "enqueue_",
            "dequeue_",
            "update_curr",
            "update_load",
            "update_cfs",
            "update_rq",
            "hrtimer",
            "timerqueue",
            "tick_",
            "select_task_rq",
            "sched_",
            "psi_",
            "__switch_to",
            "switch_mm",
            "native_sched",
            "set_next_entity",
            "put_prev",
            "default_wake_function",
            "autoremove_wake",
            "check_preempt",
            "resched",
            "reweight",
            "account_",
            "cpuacct",
            "__cgroup_account",
            "prepare_task_switch",
            "do_idle",
            "cpuidle",
            "ktime_get",
            "read_tsc",
        ],
    ),
    (
        Category::TcpIp,
        &[
            "tcp",
            "__tcp",
            "ip_",
            "__ip_",
            "ipv4",
            "ipv6",
            "ip6",
            "inet",
            "sk_",
            "__sk_",
            "sock_",
            "__sock",
            "skb",
            "__skb",
            "kfree_skb",
            "__kfree_skb",
            "alloc_skb",
            "__alloc_skb",
            "kmalloc_reserve",
            "net_",
            "__net",
            "netif",
            "__netif",
            "dev_",
            "__dev_",
            "loopback",
            "process_backlog",
            "napi",
            "__napi",
            "nf_",
            "neigh",
            "raw_local",
            "validate_xmit",
            "csum",
            "_copy_to_iter",
            "_copy_from_iter",
            "copy_user",
            "rep_movs",
            "memcpy",
            "memset",
            "release_sock",
            "__release_sock",
            "lock_sock",
            "security_sock",
            "do_softirq",
            "__do_softirq",
            "__local_bh",
            "irq_exit",
            "page_frag",
            "kmem_cache",
            "__kmem_cache",
            "kmalloc",
            "__kmalloc",
            "kfree",
            "__slab",
            "slab_",
            "___slab",
            "mem_cgroup",
            "__mod_memcg",
            "refill_stock",
            "lock_timer_base",
            "mod_timer",
            "__mod_timer",
            "sched_clock_cpu",
            "bpf_",
            "__inet",
            "bbr_",
            "cubic",
            "dst_",
            "eth_",
            "__copy_skb",
            "simple_copy_to_iter",
            "__xfrm",
            "__put_user",
            "sk_stream",
        ],
    ),
];

/// Frames that say nothing about whose work a sample is: locks, RCU, return thunks, checks
/// and containers; the frame above them decides.
const GENERIC: &[&str] = &[
    "_raw_spin",
    "__raw_callee",
    "__pv_queued",
    "queued_spin",
    "native_queued",
    "__rcu_read",
    "rcu_read",
    "srso_",
    "__x86_indirect",
    "__x86_return",
    "__check_object_size",
    "check_heap_object",
    "__virt_addr_valid",
    "is_vmalloc_addr",
    "_find_",
    "rb_",
    "__rb_",
    "__list_",
    "list_",
    "xa_load",
    "native_write_msr",
    "handle_softirqs",
    "irq_exit",
    "__irq_exit",
    "sysvec_",
    "asm_sysvec",
    "__sysvec",
    "llist_",
    "__usecs_to_jiffies",
];

/// The category of one symbol from `perf report`: `user` says it was marked `[.]`.
pub fn categorize(symbol: &str, user: bool) -> Category {
    if user {
        return Category::User;
    }
    RULES
        .iter()
        .find(|(_, prefixes)| prefixes.iter().any(|p| symbol.starts_with(p)))
        .map_or(Category::Other, |(c, _)| *c)
}

/// A server's profile: per category, its share of samples and µs per message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The server, as compare.sh names it.
    pub server: String,
    /// Server CPU µs per echoed message in the profiled run.
    pub cpu_us_per_msg: f64,
    /// Samples read.
    pub samples: u64,
    /// (category, share of samples 0..1, µs per message), in [`Category::ALL`] order.
    pub categories: Vec<(Category, f64, f64)>,
    /// The leaf symbols with the largest shares (self time), for the detail: (share, symbol).
    pub top: Vec<(f64, String)>,
}

/// One frame of a sample's call chain: its symbol, and whether it is kernel code.
type Frame = (String, bool);

/// Reads `perf script -F ip,sym,dso` text: samples separated by blank lines, each a call
/// chain from the leaf up, one frame a line (`ffffffff81a0 tcp_sendmsg ([kernel.kallsyms])`).
pub fn parse_script(text: &str) -> Vec<Vec<Frame>> {
    let mut samples = Vec::new();
    let mut chain: Vec<Frame> = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() {
            if !chain.is_empty() {
                samples.push(std::mem::take(&mut chain));
            }
            continue;
        }
        let mut parts = l.splitn(2, ' ');
        let (Some(_ip), Some(rest)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (sym, dso) = match rest.rfind(" (") {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let sym = sym.split('+').next().unwrap_or(sym).trim().to_string();
        chain.push((sym, dso.contains("kernel.kallsyms")));
    }
    if !chain.is_empty() {
        samples.push(chain);
    }
    samples
}

/// The category of one sample: user space if its leaf is, else the first frame from the
/// leaf up that a rule names, passing over generic frames; other kernel if none does.
pub fn categorize_chain(chain: &[Frame]) -> Category {
    match chain.first() {
        None => return Category::Other,
        Some((_, false)) => return Category::User,
        Some(_) => {}
    }
    for (sym, kernel) in chain {
        if !kernel {
            break;
        }
        if GENERIC.iter().any(|g| sym.starts_with(g)) {
            continue;
        }
        let c = categorize(sym, false);
        if c != Category::Other {
            return c;
        }
    }
    Category::Other
}

/// Builds a server's profile from its perf script text and its CPU µs per message.
pub fn profile(server: &str, script: &str, cpu_us_per_msg: f64) -> Profile {
    let samples = parse_script(script);
    let n = samples.len() as f64;
    let mut counts = [0u64; 5];
    let mut leaves: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for chain in &samples {
        let c = categorize_chain(chain);
        let i = Category::ALL
            .iter()
            .position(|x| *x == c)
            .expect("every category is in ALL");
        counts[i] += 1;
        if let Some((sym, kernel)) = chain.first() {
            let name = if *kernel {
                sym.clone()
            } else {
                format!("{sym} (user)")
            };
            *leaves.entry(name).or_default() += 1;
        }
    }
    let categories = Category::ALL
        .iter()
        .zip(counts)
        .map(|(c, k)| {
            let s = if n > 0.0 { k as f64 / n } else { 0.0 };
            (*c, s, s * cpu_us_per_msg)
        })
        .collect();
    let mut top: Vec<(f64, String)> = leaves
        .into_iter()
        .map(|(sym, k)| (k as f64 / n.max(1.0), sym))
        .collect();
    top.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    top.truncate(12);
    Profile {
        server: server.to_string(),
        cpu_us_per_msg,
        samples: samples.len() as u64,
        categories,
        top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten samples: 4 TCP (one behind a spin unlock called from tcp), 2 io_uring, 2 wake-ups
    /// (one behind an unlock), 1 user, 1 unknown kernel.
    const SCRIPT: &str = "
\tffffffff81000001 tcp_sendmsg_locked+0x10 ([kernel.kallsyms])
\tffffffff81000002 io_send ([kernel.kallsyms])

\tffffffff81000001 tcp_sendmsg_locked ([kernel.kallsyms])

\tffffffff81000003 __skb_datagram_iter ([kernel.kallsyms])

\tffffffff81000004 _raw_spin_unlock_irqrestore ([kernel.kallsyms])
\tffffffff81000005 tcp_v4_rcv ([kernel.kallsyms])

\tffffffff81000006 io_issue_sqe ([kernel.kallsyms])

\tffffffff81000007 __rcu_read_unlock ([kernel.kallsyms])
\tffffffff81000008 llist_reverse_order ([kernel.kallsyms])
\tffffffff81000009 tctx_task_work ([kernel.kallsyms])

\tffffffff8100000a try_to_wake_up ([kernel.kallsyms])

\tffffffff81000004 _raw_spin_unlock_irqrestore ([kernel.kallsyms])
\tffffffff8100000b try_to_wake_up ([kernel.kallsyms])
\tffffffff8100000c sock_def_readable ([kernel.kallsyms])

\t          1234 ringecho_server::backend::multishot::Loop::on_recv (/usr/bin/ringecho-server)

\tffffffff8100000d some_driver_thing ([kernel.kallsyms])
";

    #[test]
    fn symbols_fall_in_their_categories() {
        assert_eq!(categorize("tcp_v4_rcv", false), Category::TcpIp);
        assert_eq!(categorize("io_recv", false), Category::Interface);
        assert_eq!(categorize("ep_poll_callback", false), Category::Interface);
        assert_eq!(
            categorize("__x64_sys_epoll_wait", false),
            Category::Interface
        );
        assert_eq!(categorize("try_to_wake_up", false), Category::Scheduling);
        assert_eq!(categorize("__schedule", false), Category::Scheduling);
        assert_eq!(categorize("kfree_skb_reason", false), Category::TcpIp);
        assert_eq!(categorize("anything", true), Category::User);
        assert_eq!(categorize("acpi_thing", false), Category::Other);
    }

    #[test]
    fn samples_go_to_the_first_frame_a_rule_names() {
        let p = profile("multishot", SCRIPT, 5.0);
        assert_eq!(p.samples, 10);
        let get = |c: Category| *p.categories.iter().find(|x| x.0 == c).unwrap();
        assert!((get(Category::TcpIp).1 - 0.4).abs() < 1e-9, "{p:?}");
        assert!((get(Category::Interface).1 - 0.2).abs() < 1e-9, "{p:?}");
        assert!((get(Category::Scheduling).1 - 0.2).abs() < 1e-9, "{p:?}");
        assert!((get(Category::User).2 - 0.5).abs() < 1e-9, "{p:?}");
        assert!((get(Category::Other).1 - 0.1).abs() < 1e-9, "{p:?}");
        let sum: f64 = p.categories.iter().map(|c| c.2).sum();
        assert!((sum - 5.0).abs() < 1e-9);
        assert_eq!(p.top[0], (0.2, "_raw_spin_unlock_irqrestore".to_string()));
        assert!(p.top.iter().any(|t| t.1.ends_with("on_recv (user)")));
    }

    #[test]
    fn an_empty_script_is_all_zero() {
        let p = profile("x", "\n\n", 3.0);
        assert_eq!(p.samples, 0);
        assert!(p.categories.iter().all(|c| c.1 == 0.0 && c.2 == 0.0));
    }
}
