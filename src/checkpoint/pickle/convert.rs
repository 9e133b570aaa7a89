//! Conversion of the arena to the owned `Value` tree: a measuring pass that checks the output
//! budgets and finds cycles without allocating, then an iterative copying pass.

use super::arena::{Arena, Id, Node, child, child_count, is_container};
use super::{Budget, TensorRef, Value};
use anyhow::{Result, bail};
use std::collections::HashMap;

/// What one node costs in the output by itself: (values, bytes).
fn own_cost(node: &Node) -> (u64, u64) {
    match node {
        Node::Str(s) | Node::Global(s) | Node::Object(s) => (1, s.len() as u64),
        Node::Bytes(b) => (1, b.len() as u64),
        Node::Tensor(t) => (
            1 + t.shape.len() as u64 + t.stride.len() as u64,
            t.storage_key.len() as u64,
        ),
        _ => (1, 0),
    }
}

/// Copies a leaf node out into a [`Value`].
fn leaf_value(node: &Node) -> Value {
    match node {
        Node::None => Value::None,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => Value::Int(*i),
        Node::Float(f) => Value::Float(*f),
        Node::Str(s) => Value::Str(s.to_string()),
        Node::Bytes(b) => Value::Bytes(b.to_vec()),
        Node::Global(name) => Value::Global(name.to_string()),
        Node::Object(class) => Value::Object(class.to_string()),
        Node::Tensor(t) => Value::Tensor(TensorRef {
            storage_key: t.storage_key.to_string(),
            dtype: t.dtype,
            offset: t.offset,
            shape: t.shape.clone(),
            stride: t.stride.clone(),
        }),
        Node::List(_) | Node::Tuple(_) | Node::Dict(_) | Node::PersId(_) => {
            unreachable!("container passed as a leaf")
        }
    }
}

/// Builds a container value from its node and its children's values, in order.
fn container_value(node: &Node, mut children: Vec<Value>) -> Value {
    match node {
        Node::List(_) => Value::List(children),
        Node::Tuple(_) => Value::Tuple(children),
        Node::Dict(_) => {
            let mut items = Vec::with_capacity(children.len() / 2);
            let mut it = children.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                items.push((k, v));
            }
            Value::Dict(items)
        }
        Node::PersId(_) => Value::PersId(Box::new(children.pop().unwrap_or(Value::None))),
        _ => unreachable!("leaf passed as a container"),
    }
}

/// Output size of a subtree, as measured before copying it out.
#[derive(Clone, Copy, Default)]
struct Size {
    nodes: u64,
    bytes: u64,
    /// Container nesting: 0 for a leaf.
    depth: usize,
}

impl Size {
    /// A container by itself, before any of its children is added.
    const FRESH: Size = Size {
        nodes: 1,
        bytes: 0,
        depth: 0,
    };

    fn add(&mut self, child: Size) {
        self.nodes = self.nodes.saturating_add(child.nodes);
        self.bytes = self.bytes.saturating_add(child.bytes);
        self.depth = self.depth.max(child.depth);
    }

    fn check(&self, budget: &Budget) -> Result<()> {
        if self.nodes > budget.max_output_nodes as u64 {
            bail!(
                "pickle output exceeds the value budget: more than {} values \
                 (Budget::max_output_nodes; a shared value counts every time it is copied out)",
                budget.max_output_nodes
            )
        }
        if self.bytes > budget.max_output_bytes as u64 {
            bail!(
                "pickle output exceeds the byte budget: more than {} bytes of strings \
                 (Budget::max_output_bytes; a shared string counts every time it is copied out)",
                budget.max_output_bytes
            )
        }
        if self.depth > budget.max_depth {
            bail!(
                "pickle output nests containers deeper than the depth budget of {} levels \
                 (Budget::max_depth)",
                budget.max_depth
            )
        }
        Ok(())
    }
}

/// The size of a leaf node in the output.
fn leaf_size(node: &Node) -> Size {
    let (nodes, bytes) = own_cost(node);
    Size {
        nodes,
        bytes,
        depth: 0,
    }
}

/// Where the measuring walk stands with a container.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    /// On the current path: meeting it again means it contains itself.
    Open,
    /// Measured; its size is known.
    Done,
}

/// When the stream ends, the root is converted into the owned [`Value`] tree. A first pass
/// measures what that tree would be (values, string bytes, nesting depth, and whether a
/// container contains itself) without allocating it, so a pickle whose shared subtrees would
/// double the output at every level (the "billion laughs" of pickles) fails before anything
/// is copied; the second pass copies. Both passes are iterative, and the output is at most
/// [`Budget::max_depth`] deep, so neither converting, comparing nor dropping it can overflow
/// the stack.
impl Arena {
    /// First pass of the conversion: what the output tree under `root` would be, without
    /// building it. Walks the graph depth-first with an explicit stack bounded by the depth
    /// budget, measures each container once (a shared one is then added at its measured size
    /// wherever it occurs), detects a container that contains itself, and fails as soon as a
    /// subtree exceeds the budget.
    pub(super) fn measure(&self, root: Id, budget: &Budget) -> Result<()> {
        if !is_container(&self.nodes[root]) {
            return leaf_size(&self.nodes[root]).check(budget);
        }
        let mut state: HashMap<Id, Visit> = HashMap::new();
        let mut sizes: HashMap<Id, Size> = HashMap::new();
        // (container, next child, size so far: itself plus finished children)
        let mut path: Vec<(Id, usize, Size)> = vec![(root, 0, Size::FRESH)];
        state.insert(root, Visit::Open);
        while let Some(top) = path.last_mut() {
            let node = &self.nodes[top.0];
            if top.1 < child_count(node) {
                let c = child(node, top.1);
                top.1 += 1;
                let cn = &self.nodes[c];
                if !is_container(cn) {
                    top.2.add(leaf_size(cn));
                    continue;
                }
                match state.get(&c) {
                    Some(Visit::Open) => bail!(
                        "pickle holds a recursive structure (a container that contains itself); \
                         mimr does not load such values"
                    ),
                    Some(Visit::Done) => top.2.add(sizes[&c]),
                    None => {
                        if path.len() >= budget.max_depth {
                            bail!(
                                "pickle output nests containers deeper than the depth budget \
                                 of {} levels (Budget::max_depth)",
                                budget.max_depth
                            )
                        }
                        state.insert(c, Visit::Open);
                        path.push((c, 0, Size::FRESH));
                    }
                }
            } else {
                let (id, _, mut size) = path.pop().unwrap_or((root, 0, Size::FRESH));
                size.depth += 1;
                size.check(budget)?;
                state.insert(id, Visit::Done);
                sizes.insert(id, size);
                if let Some(parent) = path.last_mut() {
                    parent.2.add(size);
                }
            }
        }
        Ok(())
    }

    /// Second pass: copies the tree under `root` out into a [`Value`], iteratively. Only
    /// called after [`Arena::measure`] accepted it (acyclic and within budget).
    pub(super) fn materialise(&self, root: Id) -> Value {
        let node = &self.nodes[root];
        if !is_container(node) {
            return leaf_value(node);
        }
        // (container, next child, values of its finished children)
        let mut frames: Vec<(Id, usize, Vec<Value>)> =
            vec![(root, 0, Vec::with_capacity(child_count(node)))];
        while let Some(top) = frames.last_mut() {
            let node = &self.nodes[top.0];
            if top.1 < child_count(node) {
                let c = child(node, top.1);
                top.1 += 1;
                let cn = &self.nodes[c];
                if is_container(cn) {
                    frames.push((c, 0, Vec::with_capacity(child_count(cn))));
                } else {
                    top.2.push(leaf_value(cn));
                }
            } else {
                let Some((id, _, children)) = frames.pop() else {
                    break;
                };
                let value = container_value(&self.nodes[id], children);
                match frames.last_mut() {
                    Some(parent) => parent.2.push(value),
                    None => return value,
                }
            }
        }
        Value::None
    }
}
