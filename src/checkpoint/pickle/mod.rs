//! A safe, data-only reader of Python pickles as written by `torch.save` (method.md §6.5):
//! it builds plain values and tensor references, stubs unknown classes, and never runs code.

mod arena;
mod convert;
mod machine;
mod opcodes;
mod torch;

#[cfg(test)]
mod tests;

use anyhow::Result;
use machine::read;

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
