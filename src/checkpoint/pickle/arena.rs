//! The arena the unpickler builds into: nodes whose containers hold their children's indices,
//! dict keys, and in-place APPEND / SETITEM, so that a value shared by the memo is one node.

use super::{StorageDtype, Value};
use anyhow::{Result, bail};
use std::collections::HashMap;
use std::rc::Rc;

/// Index of a node in the arena.
pub(super) type Id = usize;

/// A value while unpickling. Containers hold the indices of their children, so one node can
/// be shared by many containers (and by the memo and the stack) without copying.
pub(super) enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Box<DictNode>),
    Global(Rc<str>),
    Object(Rc<str>),
    PersId(Id),
    Tensor(Box<TensorNode>),
}

/// A dict: entries in insertion order and an index from key to entry.
#[derive(Default)]
pub(super) struct DictNode {
    pub(super) items: Vec<(Id, Id)>,
    pub(super) index: HashMap<Key, usize>,
}

pub(super) struct TensorNode {
    pub(super) storage_key: Rc<str>,
    pub(super) dtype: StorageDtype,
    pub(super) offset: usize,
    pub(super) shape: Vec<usize>,
    pub(super) stride: Vec<usize>,
}

/// How dict keys compare. Scalar keys compare by value: None, bools, ints, floats (by bit
/// pattern), strings and byte strings. Every other key (a tuple, a class reference, a
/// tensor, …) compares by identity, i.e. only the same node is the same key. Python would
/// compare tuples by value, and would take `True`, `1` and `1.0` as one key; torch pickles
/// key their dicts by strings and ints, and comparing by identity keeps a SETITEM O(1) and
/// free of recursion whatever the key is.
#[derive(PartialEq, Eq, Hash)]
pub(super) enum Key {
    None,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Node(Id),
}

/// A short description of a node's kind for error messages (never its whole contents).
pub(super) fn node_kind(node: &Node) -> String {
    match node {
        Node::None => Value::None.kind(),
        Node::Bool(b) => Value::Bool(*b).kind(),
        Node::Int(i) => Value::Int(*i).kind(),
        Node::Float(f) => Value::Float(*f).kind(),
        Node::Str(_) => "string".into(),
        Node::Bytes(_) => "bytes".into(),
        Node::List(_) => "list".into(),
        Node::Tuple(_) => "tuple".into(),
        Node::Dict(_) => "dict".into(),
        Node::Global(name) => format!("reference to `{name}`"),
        Node::Object(class) => format!("object of class `{class}`"),
        Node::PersId(_) => "persistent id".into(),
        Node::Tensor(_) => "tensor".into(),
    }
}

pub(super) fn is_container(node: &Node) -> bool {
    matches!(
        node,
        Node::List(_) | Node::Tuple(_) | Node::Dict(_) | Node::PersId(_)
    )
}

/// Number of children a node has in the output tree (a dict entry is two: key and value).
pub(super) fn child_count(node: &Node) -> usize {
    match node {
        Node::List(v) | Node::Tuple(v) => v.len(),
        Node::Dict(d) => 2 * d.items.len(),
        Node::PersId(_) => 1,
        _ => 0,
    }
}

/// The `i`-th child of a node, `i < child_count(node)`.
pub(super) fn child(node: &Node, i: usize) -> Id {
    match node {
        Node::List(v) | Node::Tuple(v) => v[i],
        Node::Dict(d) => {
            let (k, v) = d.items[i / 2];
            if i.is_multiple_of(2) { k } else { v }
        }
        Node::PersId(c) => *c,
        _ => unreachable!("child of a leaf"),
    }
}

/// Everything the unpickler built, as a flat vector: dropping it never recurses.
///
/// Containers hold the indices of their children, and the stack, the marks and the memo hold
/// indices too. A value fetched from the memo (GET) or duplicated (DUP) is therefore the same
/// node, as in Python, where the memo holds the object itself: a container memoised while
/// empty and filled afterwards (how `pickle` writes every list and dict) is seen filled by
/// every later GET, and sharing costs O(1) however large the value is.
pub(super) struct Arena {
    pub(super) nodes: Vec<Node>,
    /// Budget units spent: nodes created plus dict entries and tensor dimensions.
    used: usize,
    pub(super) max: usize,
}

impl Arena {
    /// An empty arena that may spend `max` budget units ([`super::Budget::max_nodes`]).
    pub(super) fn new(max: usize) -> Self {
        Self {
            nodes: Vec::new(),
            used: 0,
            max,
        }
    }

    pub(super) fn charge(&mut self, n: usize) -> Result<()> {
        self.used = self.used.saturating_add(n);
        if self.used > self.max {
            bail!(
                "pickle exceeds the node budget: it builds more than {} values \
                 (Budget::max_nodes)",
                self.max
            )
        }
        Ok(())
    }

    pub(super) fn add(&mut self, node: Node) -> Result<Id> {
        self.charge(1)?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    pub(super) fn kind(&self, id: Id) -> String {
        node_kind(&self.nodes[id])
    }

    fn key(&self, id: Id) -> Key {
        match &self.nodes[id] {
            Node::None => Key::None,
            Node::Bool(b) => Key::Bool(*b),
            Node::Int(i) => Key::Int(*i),
            Node::Float(f) => Key::Float(f.to_bits()),
            Node::Str(s) => Key::Str(s.clone()),
            Node::Bytes(b) => Key::Bytes(b.clone()),
            _ => Key::Node(id),
        }
    }

    /// APPEND / APPENDS: extends the list node `target` in place, so every reference to it
    /// (memo, stack, other containers) sees the items.
    pub(super) fn push_items(&mut self, target: Id, items: Vec<Id>) -> Result<()> {
        match &mut self.nodes[target] {
            Node::List(l) => l.extend(items),
            Node::Object(_) => {} // appends to a stub are dropped
            other => bail!("APPEND to a {}", node_kind(other)),
        }
        Ok(())
    }

    /// SETITEM / SETITEMS: sets entries of the dict node `target` in place; a key already
    /// present (see [`Key`]) keeps its place and takes the new value, as in Python.
    pub(super) fn set_items(&mut self, target: Id, kv: Vec<(Id, Id)>) -> Result<()> {
        let keyed: Vec<(Key, Id, Id)> = kv.into_iter().map(|(k, v)| (self.key(k), k, v)).collect();
        match &mut self.nodes[target] {
            Node::Dict(d) => {
                for (key, k, v) in keyed {
                    match d.index.entry(key) {
                        std::collections::hash_map::Entry::Occupied(e) => d.items[*e.get()].1 = v,
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(d.items.len());
                            d.items.push((k, v));
                        }
                    }
                }
            }
            Node::Object(_) => {}
            other => bail!("SETITEM on a {}", node_kind(other)),
        }
        Ok(())
    }
}
