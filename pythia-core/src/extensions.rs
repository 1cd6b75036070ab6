//! [`Extensions`]: values of any type attached to a [`Message`](crate::Message) by the runtime's
//! settle observers or by layers, for the handler to find (a job's progress handle, say).

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

/// A small map from type to value, carried by a [`Message`](crate::Message).
///
/// Empty by default, and then free: no allocation. A message's clones share its values (each
/// is behind an `Arc`); inserting into one copy does not change the others, so a value that
/// several copies must see changes of (the runtime's copy and the handler's) is inserted
/// before the copy is made, and holds its own interior mutability. The runtime gives its
/// [`SettleObserver`](crate::SettleObserver)s that moment: `on_start`.
///
/// ```
/// use pythia_core::Message;
///
/// #[derive(Debug, PartialEq)]
/// struct Tenant(&'static str);
///
/// let msg = Message::new("x").with_extension(Tenant("acme"));
/// assert_eq!(msg.extension::<Tenant>(), Some(&Tenant("acme")));
/// assert_eq!(msg.extension::<u32>(), None);
/// ```
#[derive(Clone, Default)]
pub struct Extensions {
    // A vector, not a hash map: a message carries a handful at most.
    entries: Vec<(TypeId, Arc<dyn Any + Send + Sync>)>,
}

impl Extensions {
    /// Sets the value of type `T`, replacing any there was.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
        match self.entries.iter_mut().find(|(t, _)| *t == id) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((id, value)),
        }
    }

    /// The value of type `T`, if there is one.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.entries
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_ref())
    }

    /// Whether there is no value at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.entries.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_type_and_replaced() {
        let mut e = Extensions::default();
        assert!(e.is_empty());
        e.insert(7u32);
        e.insert("text");
        e.insert(8u32);
        assert_eq!(e.get::<u32>(), Some(&8));
        assert_eq!(e.get::<&str>(), Some(&"text"));
        assert_eq!(e.get::<u64>(), None);
        let copy = e.clone();
        e.insert(9u32);
        assert_eq!(copy.get::<u32>(), Some(&8), "a copy keeps its own values");
    }
}
