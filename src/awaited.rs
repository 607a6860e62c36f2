//! A value that one thread sets once and others wait for, each for as long
//! as it may.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// See the module documentation.
pub struct Awaited<T> {
    value: Mutex<Option<T>>,
    set: Condvar,
}

impl<T> Default for Awaited<T> {
    fn default() -> Self {
        Awaited {
            value: Mutex::new(None),
            set: Condvar::new(),
        }
    }
}

impl<T: Clone> Awaited<T> {
    /// Sets the value and wakes every waiter.
    pub fn set(&self, value: T) {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
        self.set.notify_all();
    }

    /// Whether the value is set.
    pub fn is_set(&self) -> bool {
        self.value
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The value, once set; `None` when it is not set by `until`.
    pub fn wait_until(&self, until: Instant) -> Option<T> {
        let mut value = self.value.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(v) = value.as_ref() {
                return Some(v.clone());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            value = self
                .set
                .wait_timeout(value, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn waiters_get_the_value_once_set_and_nothing_past_their_time() {
        let a: Arc<Awaited<u32>> = Arc::default();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(a.wait_until(soon), None);
        assert!(!a.is_set());
        let setter = a.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            setter.set(7);
        });
        assert_eq!(
            a.wait_until(Instant::now() + Duration::from_secs(5)),
            Some(7)
        );
        t.join().unwrap();
        assert_eq!(a.wait_until(Instant::now()), Some(7));
        assert!(a.is_set());
    }
}
