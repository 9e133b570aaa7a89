//! A safe, data-only reader of Python pickles as written by `torch.save` (method.md §6.5):
//! it builds plain values and tensor references, stubs unknown classes, and never runs code.
//!
//! Design (issue 14). The unpickler builds an *arena*: a flat `Vec` of nodes in which
//! containers hold the indices of their children, and the stack, the marks and the memo hold
//! indices too. A value fetched from the memo (GET) or duplicated (DUP) is therefore the same
//! node, as in Python, where the memo holds the object itself: a container memoised while
//! empty and filled afterwards (how `pickle` writes every list and dict) is seen filled by
//! every later GET, and sharing costs O(1) however large the value is. The arena is dropped
//! flat, whatever the nesting.
//!
//! When the stream ends, the root is converted into the owned [`Value`] tree. A first pass
//! measures what that tree would be (values, string bytes, nesting depth, and whether a
//! container contains itself) without allocating it, so a pickle whose shared subtrees would
//! double the output at every level (the "billion laughs" of pickles) fails before anything
//! is copied; the second pass copies. Both passes are iterative, and the output is at most
//! [`Budget::max_depth`] deep, so neither converting, comparing nor dropping it can overflow
//! the stack.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::rc::Rc;

/// Limits on what one pickle may make the reader build. Every limit is far above what real
/// torch checkpoints need (a ViT-2B state dict has a few thousand tensors, a full training
/// checkpoint with optimiser state perhaps 100 000 values) and far below what exhausts memory.
/// A pickle that exceeds one fails with an error naming the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Values the unpickler may create while reading the stream: every scalar, string,
    /// container, stub and tensor an opcode builds, plus one per dict entry created by a
    /// dict constructor and one per dimension of a tensor's shape and stride. It also caps
    /// the stack, the marks and the memo. Default 10 000 000 (at most a few hundred MiB of
    /// arena, and only for a pickle of at least 10 MB: most opcodes build one value).
    pub max_nodes: usize,
    /// Values in the output tree (each dict entry is two: key and value; a tensor is one plus
    /// its rank twice). A value the pickle shares by reference counts every time it is copied
    /// out, which is what stops a tiny pickle from doubling a tree until memory runs out.
    /// Default 5 000 000 (a value takes about 100 bytes: roughly 0.5 GiB of output at most,
    /// plus its strings).
    pub max_output_nodes: usize,
    /// Deepest nesting of containers in the output (a container at top level is at depth 1;
    /// dicts, lists, tuples and persistent ids count). Default 512.
    pub max_depth: usize,
    /// Bytes of strings, byte strings, class names and storage keys in the output, counting
    /// every copy of a shared one. Default 256 MiB.
    pub max_output_bytes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_nodes: 10_000_000,
            max_output_nodes: 5_000_000,
            max_depth: 512,
            max_output_bytes: 256 << 20,
        }
    }
}

/// Element type of a torch storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageDtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageDtype {
    /// Maps a torch storage class name (`FloatStorage`, …) to its element type.
    pub fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// A tensor as described in the pickle: a view into a storage record of the archive.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage_key: String,
    pub dtype: StorageDtype,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// A materialised pickle value. Objects of classes the reader does not know stay inert stubs.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// A class or function reference (`module.name`) that was not called.
    Global(String),
    /// An instance of a class this reader does not materialise (`module.name`); inert.
    Object(String),
    /// A persistent id (torch storages) before it is resolved.
    PersId(Box<Value>),
    /// A resolved storage: (dtype, key).
    Storage(StorageDtype, String),
    Tensor(TensorRef),
}

impl Value {
    /// Looks up a string key in a dict value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short human description of the value's kind, for error messages.
    pub fn kind(&self) -> String {
        match self {
            Value::Object(class) => format!("object of class `{class}`"),
            Value::Global(name) => format!("reference to `{name}`"),
            Value::Dict(_) => "dict".into(),
            Value::List(_) => "list".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::Tensor(_) => "tensor".into(),
            Value::Str(_) => "string".into(),
            other => format!("{other:?}").chars().take(40).collect(),
        }
    }
}

/// Parses a pickle byte stream into a [`Value`] under the default [`Budget`].
pub fn parse(bytes: &[u8]) -> Result<Value> {
    parse_with(bytes, &Budget::default())
}

/// Parses a pickle byte stream into a [`Value`], failing with an error that names the limit
/// when the pickle would make the reader exceed `budget`.
pub fn parse_with(bytes: &[u8], budget: &Budget) -> Result<Value> {
    let (arena, root) = read(bytes, budget)?;
    arena.measure(root, budget)?;
    Ok(arena.materialise(root))
}

/// Runs the unpickler over `bytes`: the arena of everything built and the index of the root.
fn read(bytes: &[u8], budget: &Budget) -> Result<(Arena, Id)> {
    Unpickler {
        data: bytes,
        pos: 0,
        arena: Arena {
            nodes: Vec::new(),
            used: 0,
            max: budget.max_nodes,
        },
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

/// Index of a node in the arena.
type Id = usize;

/// A value while unpickling. Containers hold the indices of their children, so one node can
/// be shared by many containers (and by the memo and the stack) without copying.
enum Node {
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
struct DictNode {
    items: Vec<(Id, Id)>,
    index: HashMap<Key, usize>,
}

struct TensorNode {
    storage_key: Rc<str>,
    dtype: StorageDtype,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// How dict keys compare. Scalar keys compare by value: None, bools, ints, floats (by bit
/// pattern), strings and byte strings. Every other key (a tuple, a class reference, a
/// tensor, …) compares by identity, i.e. only the same node is the same key. Python would
/// compare tuples by value, and would take `True`, `1` and `1.0` as one key; torch pickles
/// key their dicts by strings and ints, and comparing by identity keeps a SETITEM O(1) and
/// free of recursion whatever the key is.
#[derive(PartialEq, Eq, Hash)]
enum Key {
    None,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Node(Id),
}

/// A short description of a node's kind for error messages (never its whole contents).
fn node_kind(node: &Node) -> String {
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

fn is_container(node: &Node) -> bool {
    matches!(
        node,
        Node::List(_) | Node::Tuple(_) | Node::Dict(_) | Node::PersId(_)
    )
}

/// Number of children a node has in the output tree (a dict entry is two: key and value).
fn child_count(node: &Node) -> usize {
    match node {
        Node::List(v) | Node::Tuple(v) => v.len(),
        Node::Dict(d) => 2 * d.items.len(),
        Node::PersId(_) => 1,
        _ => 0,
    }
}

/// The `i`-th child of a node, `i < child_count(node)`.
fn child(node: &Node, i: usize) -> Id {
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

/// Everything the unpickler built, as a flat vector: dropping it never recurses.
struct Arena {
    nodes: Vec<Node>,
    /// Budget units spent: nodes created plus dict entries and tensor dimensions.
    used: usize,
    max: usize,
}

impl Arena {
    fn charge(&mut self, n: usize) -> Result<()> {
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

    fn add(&mut self, node: Node) -> Result<Id> {
        self.charge(1)?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    fn kind(&self, id: Id) -> String {
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
    fn push_items(&mut self, target: Id, items: Vec<Id>) -> Result<()> {
        match &mut self.nodes[target] {
            Node::List(l) => l.extend(items),
            Node::Object(_) => {} // appends to a stub are dropped
            other => bail!("APPEND to a {}", node_kind(other)),
        }
        Ok(())
    }

    /// SETITEM / SETITEMS: sets entries of the dict node `target` in place; a key already
    /// present (see [`Key`]) keeps its place and takes the new value, as in Python.
    fn set_items(&mut self, target: Id, kv: Vec<(Id, Id)>) -> Result<()> {
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

    /// First pass of the conversion: what the output tree under `root` would be, without
    /// building it. Walks the graph depth-first with an explicit stack bounded by the depth
    /// budget, measures each container once (a shared one is then added at its measured size
    /// wherever it occurs), detects a container that contains itself, and fails as soon as a
    /// subtree exceeds the budget.
    fn measure(&self, root: Id, budget: &Budget) -> Result<()> {
        const NEW: u8 = 0;
        const OPEN: u8 = 1;
        const DONE: u8 = 2;
        let leaf_size = |node: &Node| {
            let (nodes, bytes) = own_cost(node);
            Size {
                nodes,
                bytes,
                depth: 0,
            }
        };
        if !is_container(&self.nodes[root]) {
            return leaf_size(&self.nodes[root]).check(budget);
        }
        let mut state: HashMap<Id, u8> = HashMap::new();
        let mut sizes: HashMap<Id, Size> = HashMap::new();
        let fresh = Size {
            nodes: 1,
            bytes: 0,
            depth: 0,
        };
        // (container, next child, size so far: itself plus finished children)
        let mut path: Vec<(Id, usize, Size)> = vec![(root, 0, fresh)];
        state.insert(root, OPEN);
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
                match state.get(&c).copied().unwrap_or(NEW) {
                    OPEN => bail!(
                        "pickle holds a recursive structure (a container that contains itself); \
                         mimr does not load such values"
                    ),
                    DONE => top.2.add(sizes[&c]),
                    _ => {
                        if path.len() >= budget.max_depth {
                            bail!(
                                "pickle output nests containers deeper than the depth budget \
                                 of {} levels (Budget::max_depth)",
                                budget.max_depth
                            )
                        }
                        state.insert(c, OPEN);
                        path.push((c, 0, fresh));
                    }
                }
            } else {
                let (id, _, mut size) = path.pop().unwrap_or((root, 0, fresh));
                size.depth += 1;
                size.check(budget)?;
                state.insert(id, DONE);
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
    fn materialise(&self, root: Id) -> Value {
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

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    arena: Arena,
    stack: Vec<Id>,
    marks: Vec<usize>,
    /// Memo keys come from the file (any u32), hence a map and never a vector indexed by them.
    memo: HashMap<u32, Id>,
}

impl Unpickler<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            bail!(
                "pickle ends unexpectedly at byte {} (truncated file?)",
                self.pos
            )
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    fn line(&mut self) -> Result<String> {
        let start = self.pos;
        while self.u8()? != b'\n' {}
        Ok(String::from_utf8_lossy(&self.data[start..self.pos - 1]).into_owned())
    }
    fn sized_str(&mut self, n: usize) -> Result<Node> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).context("invalid UTF-8 string in pickle")?;
        Ok(Node::Str(Rc::from(s)))
    }
    fn sized_bytes(&mut self, n: usize) -> Result<Node> {
        let b = self.take(n)?;
        Ok(Node::Bytes(Rc::from(b)))
    }
    /// Creates a node and pushes it.
    fn push(&mut self, node: Node) -> Result<()> {
        let id = self.arena.add(node)?;
        self.push_id(id)
    }
    /// Pushes a reference to an existing node (GET, DUP, REDUCE returning an argument).
    fn push_id(&mut self, id: Id) -> Result<()> {
        if self.stack.len() >= self.arena.max {
            bail!(
                "pickle stack exceeds the node budget of {} values (Budget::max_nodes)",
                self.arena.max
            )
        }
        self.stack.push(id);
        Ok(())
    }
    fn pop(&mut self) -> Result<Id> {
        self.stack
            .pop()
            .context("pickle stack underflow (corrupt pickle)")
    }
    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        let m = self
            .marks
            .pop()
            .context("pickle MARK missing (corrupt pickle)")?;
        anyhow::ensure!(
            m <= self.stack.len(),
            "pickle MARK beyond stack (corrupt pickle)"
        );
        Ok(self.stack.split_off(m))
    }
    fn top(&self) -> Result<Id> {
        self.stack
            .last()
            .copied()
            .context("pickle stack underflow (corrupt pickle)")
    }
    /// PUT: the memo refers to the node on top of the stack itself, not a copy.
    fn memo_put(&mut self, i: u32) -> Result<()> {
        let id = self.top()?;
        if self.memo.len() >= self.arena.max && !self.memo.contains_key(&i) {
            bail!(
                "pickle memo exceeds the node budget of {} entries (Budget::max_nodes)",
                self.arena.max
            )
        }
        self.memo.insert(i, id);
        Ok(())
    }
    fn memo_get(&mut self, i: u32) -> Result<()> {
        let id = *self
            .memo
            .get(&i)
            .with_context(|| format!("pickle memo slot {i} unset"))?;
        self.push_id(id)
    }

    fn run(mut self) -> Result<(Arena, Id)> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            if op == b'.' {
                let root = self.pop()?;
                return Ok((self.arena, root));
            }
            self.step(op)
                .with_context(|| format!("pickle opcode 0x{op:02x} at byte {at}"))?;
        }
    }

    fn step(&mut self, op: u8) -> Result<()> {
        match op {
            0x80 => {
                self.u8()?; // PROTO
            }
            0x95 => {
                self.u64()?; // FRAME
            }
            b'(' => {
                if self.marks.len() >= self.arena.max {
                    bail!(
                        "pickle marks exceed the node budget of {} (Budget::max_nodes)",
                        self.arena.max
                    )
                }
                self.marks.push(self.stack.len())
            }
            b'N' => self.push(Node::None)?,
            0x88 => self.push(Node::Bool(true))?,
            0x89 => self.push(Node::Bool(false))?,
            b'}' => self.push(Node::Dict(Box::default()))?,
            b']' => self.push(Node::List(Vec::new()))?,
            b')' => self.push(Node::Tuple(Vec::new()))?,
            0x8f => self.push(Node::List(Vec::new()))?, // EMPTY_SET as list
            b'J' => {
                let v = self.u32()? as i32;
                self.push(Node::Int(v as i64))?
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Node::Int(v as i64))?
            }
            b'M' => {
                let v = self.u16()?;
                self.push(Node::Int(v as i64))?
            }
            0x8a => {
                let n = self.u8()? as usize;
                let v = self.long(n)?;
                self.push(v)?
            }
            0x8b => {
                let n = self.u32()? as usize;
                let v = self.long(n)?;
                self.push(v)?
            }
            b'I' => {
                let l = self.line()?;
                let v = match l.as_str() {
                    "01" => Node::Bool(true),
                    "00" => Node::Bool(false),
                    s => Node::Int(s.trim().parse().context("bad INT")?),
                };
                self.push(v)?
            }
            b'L' => {
                let l = self.line()?;
                let v = l.trim_end_matches('L').parse().context("bad LONG")?;
                self.push(Node::Int(v))?
            }
            b'G' => {
                let v = f64::from_be_bytes(self.take(8)?.try_into()?);
                self.push(Node::Float(v))?
            }
            b'F' => {
                let l = self.line()?;
                let v = l.trim().parse().context("bad FLOAT")?;
                self.push(Node::Float(v))?
            }
            b'X' => {
                let n = self.u32()? as usize;
                let v = self.sized_str(n)?;
                self.push(v)?
            }
            0x8c => {
                let n = self.u8()? as usize;
                let v = self.sized_str(n)?;
                self.push(v)?
            }
            0x8d => {
                let n = usize::try_from(self.u64()?).unwrap_or(usize::MAX);
                let v = self.sized_str(n)?;
                self.push(v)?
            }
            b'V' => {
                let l = self.line()?;
                self.push(Node::Str(l.into()))?
            }
            b'T' | b'B' => {
                let n = self.u32()? as usize;
                let v = self.sized_bytes(n)?;
                self.push(v)?
            }
            b'U' | b'C' => {
                let n = self.u8()? as usize;
                let v = self.sized_bytes(n)?;
                self.push(v)?
            }
            0x8e | 0x96 => {
                let n = usize::try_from(self.u64()?).unwrap_or(usize::MAX);
                let v = self.sized_bytes(n)?;
                self.push(v)?
            }
            b'S' => {
                let l = self.line()?;
                let s = l.trim_matches(|c| c == '\'' || c == '"');
                self.push(Node::Str(s.into()))?
            }
            b'q' => {
                let i = self.u8()? as u32;
                self.memo_put(i)?
            }
            b'r' => {
                let i = self.u32()?;
                self.memo_put(i)?
            }
            b'p' => {
                let i: u32 = self.line()?.trim().parse().context("bad PUT")?;
                self.memo_put(i)?
            }
            0x94 => {
                // MEMOIZE: the next slot is the memo's length, as in Python
                let i = u32::try_from(self.memo.len()).context("pickle memo is full")?;
                self.memo_put(i)?
            }
            b'h' => {
                let i = self.u8()? as u32;
                self.memo_get(i)?
            }
            b'j' => {
                let i = self.u32()?;
                self.memo_get(i)?
            }
            b'g' => {
                let i: u32 = self.line()?.trim().parse().context("bad GET")?;
                self.memo_get(i)?
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.push(Node::Global(format!("{module}.{name}").into()))?
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let global = match (&self.arena.nodes[module], &self.arena.nodes[name]) {
                    (Node::Str(m), Node::Str(n)) => format!("{m}.{n}"),
                    _ => bail!("STACK_GLOBAL expects two strings"),
                };
                self.push(Node::Global(global.into()))?
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push(Node::Tuple(items))?
            }
            0x85 => {
                let a = self.pop()?;
                self.push(Node::Tuple(vec![a]))?
            }
            0x86 => {
                let b = self.pop()?;
                let a = self.pop()?;
                self.push(Node::Tuple(vec![a, b]))?
            }
            0x87 => {
                let c = self.pop()?;
                let b = self.pop()?;
                let a = self.pop()?;
                self.push(Node::Tuple(vec![a, b, c]))?
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Node::List(items))?
            }
            b'd' => {
                let items = self.pop_mark()?;
                let kv = pairs(items)?;
                let dict = self.arena.add(Node::Dict(Box::default()))?;
                self.arena.set_items(dict, kv)?;
                self.push_id(dict)?
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push(Node::List(items))? // FROZENSET
            }
            b'a' => {
                let v = self.pop()?;
                let target = self.top()?;
                self.arena.push_items(target, vec![v])?
            }
            b'e' | 0x90 => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                self.arena.push_items(target, items)?
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                let target = self.top()?;
                self.arena.set_items(target, vec![(k, v)])?
            }
            b'u' => {
                let items = self.pop_mark()?;
                let kv = pairs(items)?;
                let target = self.top()?;
                self.arena.set_items(target, kv)?
            }
            b'0' => {
                self.pop()?;
            }
            b'2' => {
                // DUP: the same node again, not a copy
                let v = self.top()?;
                self.push_id(v)?
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'Q' => {
                let pid = self.pop()?;
                self.push(Node::PersId(pid))?
            }
            b'P' => {
                let l = self.line()?;
                let pid = self.arena.add(Node::Str(l.into()))?;
                self.push(Node::PersId(pid))?
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = self.reduce(callable, args)?;
                self.push_id(v)?
            }
            0x81 => {
                let _args = self.pop()?;
                let cls = self.pop()?;
                let v = self.instantiate(cls);
                self.push(v)?
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let _args = self.pop()?;
                let cls = self.pop()?;
                let v = self.instantiate(cls);
                self.push(v)?
            }
            b'i' => {
                let module = self.line()?;
                let name = self.line()?;
                self.pop_mark()?;
                self.push(Node::Object(format!("{module}.{name}").into()))?
            }
            b'o' => {
                let items = self.pop_mark()?;
                let Some(&cls) = items.first() else {
                    bail!("OBJ without class")
                };
                let v = self.instantiate(cls);
                self.push(v)?
            }
            b'b' => {
                // BUILD: state is applied to stubs by ignoring it; dict-like objects keep items.
                self.pop()?;
            }
            _ => bail!("unsupported pickle opcode 0x{op:02x} (corrupt file or unknown protocol)"),
        }
        Ok(())
    }

    fn long(&mut self, n: usize) -> Result<Node> {
        let b = self.take(n)?;
        anyhow::ensure!(n <= 8, "integer of {n} bytes is too large");
        if n == 0 {
            return Ok(Node::Int(0));
        }
        let mut buf = if b[n - 1] & 0x80 != 0 {
            [0xffu8; 8]
        } else {
            [0u8; 8]
        };
        buf[..n].copy_from_slice(b);
        Ok(Node::Int(i64::from_le_bytes(buf)))
    }

    /// NEWOBJ / OBJ: dict classes become empty dicts (filled by later SETITEMS), every other
    /// class an inert stub.
    fn instantiate(&self, cls: Id) -> Node {
        match &self.arena.nodes[cls] {
            Node::Global(name) if is_dict_class(name) => Node::Dict(Box::default()),
            Node::Global(name) => Node::Object(name.clone()),
            other => Node::Object(node_kind(other).into()),
        }
    }

    /// Applies a callable from the pickle. Only data constructors are interpreted; every other
    /// callable yields an inert stub object naming it. Returns the resulting node, which for
    /// `_rebuild_parameter` is its argument itself.
    fn reduce(&mut self, callable: Id, args: Id) -> Result<Id> {
        let name = match &self.arena.nodes[callable] {
            Node::Global(name) => name.clone(),
            other => {
                let kind = node_kind(other);
                return self.arena.add(Node::Object(kind.into()));
            }
        };
        // only the first few arguments are ever read: never copy a long argument tuple
        let (argc, args): (usize, Vec<Id>) = match &self.arena.nodes[args] {
            Node::Tuple(a) => (a.len(), a.iter().take(4).copied().collect()),
            _ => return self.arena.add(Node::Object(name)),
        };
        match &*name {
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                let t = self.rebuild_tensor(argc, &args)?;
                self.arena.add(Node::Tensor(Box::new(t)))
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                match args.first() {
                    Some(&tensor) => Ok(tensor),
                    None => self.arena.add(Node::None),
                }
            }
            n if is_dict_class(n) => {
                // dict(pairs) / OrderedDict(pairs): the pairs list may be a shared memo node
                let len = match args.first().map(|&a| &self.arena.nodes[a]) {
                    Some(Node::List(items)) => items.len(),
                    Some(Node::Dict(d)) => d.items.len(),
                    _ => 0,
                };
                self.arena.charge(len)?;
                let source = args.first().map(|&a| &self.arena.nodes[a]);
                let kv: Vec<(Id, Id)> = match source {
                    Some(Node::List(items)) => items
                        .iter()
                        .filter_map(|&it| match &self.arena.nodes[it] {
                            Node::Tuple(kv) | Node::List(kv) if kv.len() == 2 => {
                                Some((kv[0], kv[1]))
                            }
                            _ => None,
                        })
                        .collect(),
                    Some(Node::Dict(d)) => d.items.clone(),
                    _ => Vec::new(),
                };
                let dict = self.arena.add(Node::Dict(Box::default()))?;
                self.arena.set_items(dict, kv)?;
                Ok(dict)
            }
            _ => self.arena.add(Node::Object(name)),
        }
    }

    fn rebuild_tensor(&mut self, argc: usize, args: &[Id]) -> Result<TensorNode> {
        let (Some(&storage), Some(&offset), Some(&size), Some(&stride)) =
            (args.first(), args.get(1), args.get(2), args.get(3))
        else {
            bail!("_rebuild_tensor_v2 with {argc} arguments")
        };
        let (dtype, storage_key) = match &self.arena.nodes[storage] {
            Node::PersId(pid) => self.resolve_storage(*pid)?,
            other => bail!(
                "tensor storage is a {}, expected a persistent id",
                node_kind(other)
            ),
        };
        let offset = self.as_usize(offset)?;
        let shape = self.as_usize_list(size)?;
        let stride = self.as_usize_list(stride)?;
        Ok(TensorNode {
            storage_key,
            dtype,
            offset,
            shape,
            stride,
        })
    }

    /// Resolves `('storage', <torch.FloatStorage>, key, location, numel)`.
    fn resolve_storage(&self, pid: Id) -> Result<(StorageDtype, Rc<str>)> {
        let nodes = &self.arena.nodes;
        let Node::Tuple(t) = &nodes[pid] else {
            bail!("persistent id is a {}", self.arena.kind(pid))
        };
        let at = |i: usize| t.get(i).map(|&c| &nodes[c]);
        match (at(0), at(1), at(2)) {
            (Some(Node::Str(tag)), Some(Node::Global(class)), Some(Node::Str(key)))
                if &**tag == "storage" =>
            {
                let short = class.rsplit('.').next().unwrap_or(class);
                let dtype = StorageDtype::from_class(short)
                    .with_context(|| format!("unsupported storage type `{class}`"))?;
                Ok((dtype, key.clone()))
            }
            _ => {
                let items: Vec<String> = t.iter().take(5).map(|&c| self.arena.kind(c)).collect();
                bail!(
                    "unrecognised persistent id: a tuple of {} items ({}{})",
                    t.len(),
                    items.join(", "),
                    if t.len() > 5 { ", …" } else { "" }
                )
            }
        }
    }

    fn as_usize(&self, id: Id) -> Result<usize> {
        match &self.arena.nodes[id] {
            Node::Int(i) if *i >= 0 => Ok(*i as usize),
            other => bail!(
                "expected a non-negative integer, found {}",
                node_kind(other)
            ),
        }
    }

    /// A tuple of integers (a shape or stride); its length is charged to the node budget,
    /// since every tensor keeps its own copy.
    fn as_usize_list(&mut self, id: Id) -> Result<Vec<usize>> {
        let len = match &self.arena.nodes[id] {
            Node::Tuple(items) | Node::List(items) => items.len(),
            other => bail!("expected a tuple of integers, found {}", node_kind(other)),
        };
        self.arena.charge(len)?;
        match &self.arena.nodes[id] {
            Node::Tuple(items) | Node::List(items) => {
                items.iter().map(|&i| self.as_usize(i)).collect()
            }
            _ => Ok(Vec::new()),
        }
    }
}

fn is_dict_class(name: &str) -> bool {
    name == "collections.OrderedDict" || name == "builtins.dict"
}

fn pairs(items: Vec<Id>) -> Result<Vec<(Id, Id)>> {
    anyhow::ensure!(items.len().is_multiple_of(2), "odd number of dict items");
    Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn err_of(bytes: &[u8], budget: &Budget) -> String {
        format!("{:#}", parse_with(bytes, budget).unwrap_err())
    }

    fn list(items: Vec<Value>) -> Value {
        Value::List(items)
    }

    /// The `data.pkl` record of a torch zip checkpoint in tests/fixtures.
    fn fixture_pickle(file: &str) -> Vec<u8> {
        use std::io::Read;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(file);
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let name = zip
            .file_names()
            .find(|n| n.ends_with("/data.pkl"))
            .unwrap()
            .to_string();
        let mut out = Vec::new();
        zip.by_name(&name).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn parses_protocol2_dict_with_ints_and_strings() {
        // pickle.dumps({'a': 1, 'b': 'x'}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02X\x01\x00\x00\x00xq\x03u.";
        let v = parse(bytes).unwrap();
        assert_eq!(v.get("a"), Some(&Value::Int(1)));
        assert_eq!(v.get("b"), Some(&Value::Str("x".into())));
    }

    #[test]
    fn unknown_reduce_stays_an_inert_stub() {
        // cos.system\n(S'echo hi'\ntR.  -- os.system('echo hi') must not run
        let bytes = b"cos\nsystem\n(S'echo hi'\ntR.";
        assert_eq!(parse(bytes).unwrap(), Value::Object("os.system".into()));
    }

    #[test]
    fn truncated_pickle_is_an_error() {
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00";
        let err = format!("{:#}", parse(bytes).unwrap_err());
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn doubling_bomb_via_dup_fails_on_the_value_budget_before_copying() {
        // 84 bytes: PROTO 2, EMPTY_LIST, then 40 × (DUP, TUPLE2), STOP; i.e.
        //   x = []; for _ in range(40): x = (x, x)
        // Python loads it as 41 shared objects; copied out it is 2^41 values.
        // b"\x80\x02]" + b"2\x86" * 40 + b"."
        let bomb = b"\x80\x02]2\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x862\x86.";
        assert_eq!(bomb.len(), 84);
        let (arena, _) = read(bomb, &Budget::default()).unwrap();
        assert_eq!(arena.nodes.len(), 41, "DUP must share, not copy");
        let t = Instant::now();
        let err = err_of(bomb, &Budget::default());
        assert!(err.contains("Budget::max_output_nodes"), "{err}");
        assert!(err.contains("5000000"), "{err}");
        // measured before anything is copied: fast, and nothing of the output is allocated
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn doubling_bomb_via_memo_get_fails_on_the_value_budget() {
        // x = []; for _ in range(40): x = [x, x]   written with the memo, as pickle would:
        // b"\x80\x02]q\x00" + b"(h\x00h\x00lq\x00" * 40 + b"."
        // (MARK, GET 0, GET 0, LIST, PUT 0): 285 bytes.
        let mut bomb = b"\x80\x02]q\x00".to_vec();
        for _ in 0..40 {
            bomb.extend_from_slice(b"(h\x00h\x00lq\x00");
        }
        bomb.push(b'.');
        let t = Instant::now();
        let err = err_of(&bomb, &Budget::default());
        assert!(err.contains("Budget::max_output_nodes"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn doubling_bomb_of_strings_fails_on_the_byte_budget() {
        // a 4 KiB string, then 30 × (DUP, TUPLE2): 4 TiB of strings once copied out
        let mut bomb = b"\x80\x02X\x00\x10\x00\x00".to_vec();
        bomb.extend(std::iter::repeat_n(b'z', 4096));
        for _ in 0..30 {
            bomb.extend_from_slice(b"2\x86");
        }
        bomb.push(b'.');
        let budget = Budget {
            max_output_nodes: usize::MAX,
            ..Budget::default()
        };
        let err = err_of(&bomb, &budget);
        assert!(err.contains("Budget::max_output_bytes"), "{err}");
        assert!(err.contains(&(256usize << 20).to_string()), "{err}");
    }

    #[test]
    fn memoised_list_filled_after_put_is_seen_filled_by_get() {
        // x = [1, 2]; pickle.dumps([x, x], protocol=2)  -- Python loads [[1, 2], [1, 2]]:
        // the inner list is PUT (slot 1) while empty, filled by APPENDS, then fetched by GET 1.
        let bytes = b"\x80\x02]q\x00(]q\x01(K\x01K\x02eh\x01e.";
        let x = list(vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(parse(bytes).unwrap(), list(vec![x.clone(), x]));

        // crafted: EMPTY_LIST, PUT 0, 1, APPEND, GET 0, TUPLE2  -- Python: ([1], [1])
        let bytes = b"\x80\x02]q\x00K\x01ah\x00\x86.";
        let x = list(vec![Value::Int(1)]);
        assert_eq!(parse(bytes).unwrap(), Value::Tuple(vec![x.clone(), x]));
    }

    #[test]
    fn memoised_dict_filled_after_put_is_seen_filled_by_get() {
        // d = {'k': 1}; pickle.dumps({'a': d, 'b': d}, protocol=2)
        //   -- Python: {'a': {'k': 1}, 'b': {'k': 1}}
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01}q\x02X\x01\x00\x00\x00kq\x03K\x01sX\x01\x00\x00\x00bq\x04h\x02u.";
        let v = parse(bytes).unwrap();
        let d = Value::Dict(vec![(Value::Str("k".into()), Value::Int(1))]);
        assert_eq!(v.get("a"), Some(&d));
        assert_eq!(v.get("b"), Some(&d));
    }

    #[test]
    fn ordered_dict_reduce_reads_a_shared_args_list() {
        // OrderedDict(x) where x = [('a', 1)] is memoised empty, filled, popped and fetched:
        // GLOBAL, EMPTY_LIST, PUT 0, 'a', 1, TUPLE2, APPEND, POP, GET 0, TUPLE1, REDUCE
        let bytes = b"ccollections\nOrderedDict\n]q\x00X\x01\x00\x00\x00aK\x01\x86a0h\x00\x85R.";
        assert_eq!(
            parse(bytes).unwrap(),
            Value::Dict(vec![(Value::Str("a".into()), Value::Int(1))])
        );
    }

    #[test]
    fn scalar_keys_compare_by_value() {
        // {'a': 1, 'a': 2} written with SETITEMS: one entry, the last value (as in Python)
        let bytes = b"}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00aK\x02u.";
        assert_eq!(
            parse(bytes).unwrap(),
            Value::Dict(vec![(Value::Str("a".into()), Value::Int(2))])
        );
    }

    #[test]
    fn self_containing_containers_are_a_recursive_structure_error() {
        // l = []; l.append(l); pickle.dumps(l, protocol=2)
        let err = err_of(b"\x80\x02]q\x00h\x00a.", &Budget::default());
        assert!(err.contains("recursive structure"), "{err}");
        // d = {}; d[1] = d  (EMPTY_DICT, PUT 0, 1, GET 0, SETITEM)
        let err = err_of(b"\x80\x02}q\x00K\x01h\x00s.", &Budget::default());
        assert!(err.contains("recursive structure"), "{err}");
    }

    #[test]
    fn million_level_nesting_is_a_depth_error_not_a_stack_overflow() {
        // [[[...]]] a million deep: 10^6 × EMPTY_LIST, then (10^6 - 1) × APPEND
        let n = 1_000_000;
        let mut bytes = vec![b']'; n];
        bytes.extend(std::iter::repeat_n(b'a', n - 1));
        bytes.push(b'.');
        let err = err_of(&bytes, &Budget::default());
        assert!(err.contains("Budget::max_depth"), "{err}");
        assert!(err.contains("512"), "{err}");
        // nested tuples the same way: MARK a million times, then TUPLE a million times
        let mut bytes = vec![b'('; n];
        bytes.extend(std::iter::repeat_n(b't', n));
        bytes.push(b'.');
        let err = err_of(&bytes, &Budget::default());
        assert!(err.contains("Budget::max_depth"), "{err}");
    }

    #[test]
    fn nesting_within_the_depth_budget_parses() {
        let n = 512;
        let mut bytes = vec![b']'; n];
        bytes.extend(std::iter::repeat_n(b'a', n - 1));
        bytes.push(b'.');
        let mut v = &parse(&bytes).unwrap();
        let mut depth = 0;
        while let Value::List(items) = v {
            depth += 1;
            match items.first() {
                Some(inner) => v = inner,
                None => break,
            }
        }
        assert_eq!(depth, 512);
        let mut bytes = vec![b']'; n + 1];
        bytes.extend(std::iter::repeat_n(b'a', n));
        bytes.push(b'.');
        assert!(err_of(&bytes, &Budget::default()).contains("Budget::max_depth"));
    }

    #[test]
    fn dup_of_a_big_list_shares_it_until_output() {
        // MARK, MARK, 10 000 × BININT1 7, LIST, 99 × DUP, LIST: [x] * 100, x = [7] * 10_000
        let mut bytes = b"((".to_vec();
        for _ in 0..10_000 {
            bytes.extend_from_slice(b"K\x07");
        }
        bytes.push(b'l');
        bytes.extend(std::iter::repeat_n(b'2', 99));
        bytes.extend_from_slice(b"l.");
        let (arena, _) = read(&bytes, &Budget::default()).unwrap();
        assert_eq!(arena.nodes.len(), 10_002, "DUP must not copy the list");
        let v = parse(&bytes).unwrap();
        let x = list(vec![Value::Int(7); 10_000]);
        assert_eq!(v, list(vec![x; 100]));
        // copied out it is 1 000 101 values: a smaller output budget stops it
        let small = Budget {
            max_output_nodes: 1_000_000,
            ..Budget::default()
        };
        assert!(err_of(&bytes, &small).contains("Budget::max_output_nodes"));
    }

    #[test]
    fn node_budget_limits_what_the_unpickler_builds() {
        let bytes = [vec![b'N'; 1000], b".".to_vec()].concat();
        let small = Budget {
            max_nodes: 999,
            ..Budget::default()
        };
        let err = err_of(&bytes, &small);
        assert!(
            err.contains("Budget::max_nodes") && err.contains("999"),
            "{err}"
        );
        assert_eq!(parse(&bytes).unwrap(), Value::None);
    }

    #[test]
    fn memo_keys_are_sparse() {
        // LONG_BINPUT 0xffffffff, LONG_BINGET 0xffffffff: no slot-indexed allocation
        let bytes = b"]r\xff\xff\xff\xffj\xff\xff\xff\xff\x86.";
        let v = parse(bytes).unwrap();
        assert_eq!(v, Value::Tuple(vec![list(vec![]), list(vec![])]));
        let err = format!("{:#}", parse(b"j\x00\x00\x00\x10.").unwrap_err());
        assert!(err.contains("memo slot 268435456 unset"), "{err}");
    }

    #[test]
    fn real_torch_state_dicts_parse() {
        for file in ["mae_prenorm.pth", "refined_prenorm.th", "d2v2_postnorm.pt"] {
            let root = parse(&fixture_pickle(file)).unwrap();
            let Value::Dict(top) = &root else {
                panic!("{file}: root is a {}", root.kind())
            };
            assert!(!top.is_empty(), "{file}");
        }
        // mae_prenorm.pth: {'model': OrderedDict(name -> tensor)}; torch.load gives 48
        // tensors, cls_token of shape (1, 1, 32), stride (32, 32, 1), storage '0'
        let root = parse(&fixture_pickle("mae_prenorm.pth")).unwrap();
        let Some(Value::Dict(model)) = root.get("model") else {
            panic!("no model dict")
        };
        assert_eq!(model.len(), 48);
        for (k, v) in model {
            assert!(matches!(k, Value::Str(_)), "{k:?}");
            assert!(matches!(v, Value::Tensor(_)), "{k:?} is a {}", v.kind());
        }
        let Some(Value::Tensor(t)) = root.get("model").and_then(|m| m.get("cls_token")) else {
            panic!("no cls_token")
        };
        assert_eq!(t.storage_key, "0");
        assert_eq!(t.dtype, StorageDtype::F32);
        assert_eq!(t.offset, 0);
        assert_eq!(t.shape, vec![1, 1, 32]);
        assert_eq!(t.stride, vec![32, 32, 1]);
        // evil_global.pth: the unknown class stays an inert stub beside real tensors
        let root = parse(&fixture_pickle("evil_global.pth")).unwrap();
        let model = root.get("model").unwrap();
        assert_eq!(
            model.get("norm.weight"),
            Some(&Value::Object("__main__.Evil".into()))
        );
        assert!(matches!(model.get("norm.bias"), Some(Value::Tensor(_))));
    }

    #[test]
    fn seeded_random_mutations_never_panic_and_stay_bounded() {
        let sources: Vec<Vec<u8>> = vec![
            fixture_pickle("mae_prenorm.pth"),
            fixture_pickle("evil_global.pth"),
            b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01}q\x02X\x01\x00\x00\x00kq\x03K\x01sX\x01\x00\x00\x00bq\x04h\x02u.".to_vec(),
            b"\x80\x02]q\x00(]q\x01(K\x01K\x02eh\x01e.".to_vec(),
            b"\x80\x02]2\x862\x862\x862\x862\x862\x862\x86.".to_vec(),
            b"ccollections\nOrderedDict\n]q\x00X\x01\x00\x00\x00aK\x01\x86a0h\x00\x85R.".to_vec(),
            b"cos\nsystem\n(S'echo hi'\ntR.".to_vec(),
        ];
        // every opcode the reader knows, and a few it does not
        const OPS: &[u8] = b"\x80\x95(N\x88\x89}])\x8fJKM\x8a\x8bILGFX\x8c\x8dVTBUC\x8e\x96Sqrp\x94hjgc\x93t\x85\x86\x87ld\x91aeu\x90s021QPR\x81\x92iob.\x00\xff";
        let budget = Budget {
            max_nodes: 20_000,
            max_output_nodes: 20_000,
            max_depth: 64,
            max_output_bytes: 1 << 20,
        };
        let mut rng = crate::rng::Rng::new(14);
        let (mut ok, mut err) = (0, 0);
        let mut slowest = Duration::ZERO;
        for case in 0..2000 {
            let mut b = sources[rng.below(sources.len())].clone();
            for _ in 0..1 + rng.below(4) {
                let len = b.len().max(1);
                match rng.below(5) {
                    0 => {
                        // flip bits of a byte
                        let i = rng.below(len);
                        if let Some(x) = b.get_mut(i) {
                            *x ^= 1 + rng.below(255) as u8;
                        }
                    }
                    1 => b.truncate(rng.below(len)),
                    2 => {
                        // insert an opcode with 0–8 random argument bytes
                        let at = rng.below(b.len() + 1);
                        let mut ins = vec![OPS[rng.below(OPS.len())]];
                        for _ in 0..rng.below(9) {
                            ins.push(rng.next_u64() as u8);
                        }
                        b.splice(at..at, ins);
                    }
                    3 => {
                        // duplicate a slice (repeats memo GETs, DUPs, MARKs, …) up to 8 times
                        let start = rng.below(len);
                        let end = (start + 1 + rng.below(64)).min(b.len());
                        let piece = b.get(start..end).unwrap_or_default().to_vec();
                        let at = rng.below(b.len() + 1);
                        let copies = 1 + rng.below(8);
                        b.splice(at..at, piece.repeat(copies));
                    }
                    _ => {
                        // overwrite a byte with an opcode
                        let i = rng.below(len);
                        if let Some(x) = b.get_mut(i) {
                            *x = OPS[rng.below(OPS.len())];
                        }
                    }
                }
            }
            let t = Instant::now();
            let result = std::panic::catch_unwind(|| parse_with(&b, &budget));
            let took = t.elapsed();
            slowest = slowest.max(took);
            match result {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(_)) => err += 1,
                Err(_) => panic!("case {case}: parse panicked on {b:?}"),
            }
            assert!(took < Duration::from_secs(2), "case {case} took {took:?}");
        }
        assert_eq!(ok + err, 2000);
        // the mutations must exercise both outcomes
        assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
        eprintln!("mutations: {ok} parsed, {err} rejected, slowest {slowest:?}");
    }
}
