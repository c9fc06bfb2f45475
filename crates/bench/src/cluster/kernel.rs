//! What the kernel spends on the held sockets (both ends: the nodes' and the clients'), read
//! before and after the logins: the TCP buffer pages of /proc/net/sockstat (`TCP: … mem N`,
//! pages), the slab caches of /proc/slabinfo (the socket objects themselves: `TCP`,
//! `sock_inode_cache`, `filp`, `dentry`, `eventpoll_epi`, …; the whole machine's, so other
//! work on the machine shows too), and MemAvailable from /proc/meminfo.

use std::collections::HashMap;

/// One reading.
#[derive(Clone, Default)]
pub struct Kernel {
    /// TCP sockets in use (`inuse`) and their buffer memory, bytes (`mem` × page size).
    pub tcp_inuse: u64,
    pub tcp_mem: u64,
    /// Per slab cache: bytes its slabs take (num_slabs × pages per slab × page size).
    pub slabs: HashMap<String, u64>,
    pub mem_available: u64,
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(1) as u64
}

impl Kernel {
    pub fn read() -> Kernel {
        let page = page_size();
        let mut k = Kernel::default();
        if let Ok(text) = std::fs::read_to_string("/proc/net/sockstat") {
            (k.tcp_inuse, k.tcp_mem) = parse_sockstat(&text);
            k.tcp_mem *= page;
        }
        if let Ok(text) = std::fs::read_to_string("/proc/slabinfo") {
            k.slabs = parse_slabinfo(&text, page);
        }
        if let Ok(text) = std::fs::read_to_string("/proc/meminfo") {
            k.mem_available = text
                .lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024);
        }
        k
    }

    /// All slab caches' bytes.
    pub fn slab_total(&self) -> u64 {
        self.slabs.values().sum()
    }

    /// The caches that grew most from `before`, largest first: (name, bytes).
    pub fn slab_growth(&self, before: &Kernel, top: usize) -> Vec<(String, u64)> {
        let mut grew: Vec<(String, u64)> = self
            .slabs
            .iter()
            .filter_map(|(name, &b)| {
                let a = before.slabs.get(name).copied().unwrap_or(0);
                (b > a).then(|| (name.clone(), b - a))
            })
            .collect();
        grew.sort_by_key(|g| std::cmp::Reverse(g.1));
        grew.truncate(top);
        grew
    }
}

/// `TCP: inuse N orphan N tw N alloc N mem N` → (inuse, mem pages).
pub fn parse_sockstat(text: &str) -> (u64, u64) {
    let Some(line) = text.lines().find(|l| l.starts_with("TCP:")) else {
        return (0, 0);
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let get = |name: &str| {
        words
            .iter()
            .position(|w| *w == name)
            .and_then(|i| words.get(i + 1)?.parse().ok())
            .unwrap_or(0)
    };
    (get("inuse"), get("mem"))
}

/// `/proc/slabinfo` 2.1 → bytes per cache.
pub fn parse_slabinfo(text: &str, page: u64) -> HashMap<String, u64> {
    text.lines()
        .filter(|l| !l.starts_with("slabinfo") && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // name active_objs num_objs objsize objperslab pagesperslab : tunables … :
            // slabdata active_slabs num_slabs sharedavail
            let pages_per_slab: u64 = f.get(5)?.parse().ok()?;
            let at = f.iter().position(|w| *w == "slabdata")?;
            let num_slabs: u64 = f.get(at + 2)?.parse().ok()?;
            Some((f[0].to_owned(), num_slabs * pages_per_slab * page))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_and_slabinfo_are_read_by_name() {
        let sockstat =
            "sockets: used 612\nTCP: inuse 40 orphan 0 tw 3 alloc 45 mem 7\nUDP: inuse 1 mem 0\n";
        assert_eq!(parse_sockstat(sockstat), (40, 7));
        let slabinfo = "slabinfo - version: 2.1\n\
            # name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n\
            TCP                  199    208   2368   13    8 : tunables    0    0    0 : slabdata     16     16      0\n\
            filp                1470   1470    192   21    1 : tunables    0    0    0 : slabdata     70     70      0\n";
        let s = parse_slabinfo(slabinfo, 4096);
        assert_eq!(s["TCP"], 16 * 8 * 4096);
        assert_eq!(s["filp"], 70 * 4096);
        let before = Kernel {
            slabs: s.clone(),
            ..Kernel::default()
        };
        let mut after = before.clone();
        after.slabs.insert("TCP".into(), s["TCP"] + 100);
        assert_eq!(after.slab_growth(&before, 5), vec![("TCP".to_owned(), 100)]);
    }
}
