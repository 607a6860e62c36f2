//! A least-recently-used order over slots of a slab: O(1) touch, insert and removal.
//! Knows nothing of values or bytes; the store decides what to evict.

const NONE: u32 = u32::MAX;

struct Link<K> {
    key: Option<K>,
    prev: u32,
    next: u32,
}

/// Keys in recency order; each key gets a handle (`u32`) for touching or removing it.
pub struct Lru<K> {
    links: Vec<Link<K>>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    len: usize,
}

impl<K> Default for Lru<K> {
    fn default() -> Self {
        Lru {
            links: Vec::new(),
            free: Vec::new(),
            head: NONE,
            tail: NONE,
            len: 0,
        }
    }
}

impl<K> Lru<K> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a key as the most recently used, returning its handle.
    pub fn insert(&mut self, key: K) -> u32 {
        let link = Link {
            key: Some(key),
            prev: NONE,
            next: NONE,
        };
        let at = match self.free.pop() {
            Some(i) => {
                self.links[i as usize] = link;
                i
            }
            None => {
                self.links.push(link);
                (self.links.len() - 1) as u32
            }
        };
        self.attach_front(at);
        self.len += 1;
        at
    }

    /// Marks a key as just used.
    pub fn touch(&mut self, at: u32) {
        if self.head != at {
            self.detach(at);
            self.attach_front(at);
        }
    }

    /// Removes a key by handle and returns it.
    pub fn remove(&mut self, at: u32) -> K {
        self.detach(at);
        self.free.push(at);
        self.len -= 1;
        self.links[at as usize]
            .key
            .take()
            .expect("an LRU handle names a live key")
    }

    /// Removes and returns the least recently used key.
    pub fn pop_oldest(&mut self) -> Option<K> {
        (self.tail != NONE).then(|| self.remove(self.tail))
    }

    fn detach(&mut self, at: u32) {
        let (prev, next) = {
            let l = &self.links[at as usize];
            (l.prev, l.next)
        };
        if prev == NONE {
            self.head = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next == NONE {
            self.tail = prev;
        } else {
            self.links[next as usize].prev = prev;
        }
    }

    fn attach_front(&mut self, at: u32) {
        let old = self.head;
        {
            let l = &mut self.links[at as usize];
            l.prev = NONE;
            l.next = old;
        }
        if old == NONE {
            self.tail = at;
        } else {
            self.links[old as usize].prev = at;
        }
        self.head = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_in_recency_order() {
        let mut lru = Lru::default();
        let a = lru.insert("a");
        let _b = lru.insert("b");
        let c = lru.insert("c");
        lru.touch(a);
        assert_eq!(lru.pop_oldest(), Some("b"));
        lru.touch(c);
        assert_eq!(lru.pop_oldest(), Some("a"));
        assert_eq!(lru.pop_oldest(), Some("c"));
        assert_eq!(lru.pop_oldest(), None);
        assert!(lru.is_empty());
    }

    #[test]
    fn removal_from_the_middle_and_reuse_of_handles() {
        let mut lru = Lru::default();
        let handles: Vec<u32> = (0..5).map(|i| lru.insert(i)).collect();
        assert_eq!(lru.remove(handles[2]), 2);
        assert_eq!(lru.remove(handles[0]), 0);
        let reused = lru.insert(9);
        assert!(handles.contains(&reused));
        let order: Vec<i32> = std::iter::from_fn(|| lru.pop_oldest()).collect();
        assert_eq!(order, [1, 3, 4, 9]);
    }
}
