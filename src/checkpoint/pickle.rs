//! A safe, data-only reader of Python pickles as written by `torch.save` (method.md §6.5):
//! it builds plain values and tensor references, stubs unknown classes, and never runs code.

use anyhow::{Context, Result, bail};

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

/// Parses a pickle byte stream into a [`Value`].
pub fn parse(bytes: &[u8]) -> Result<Value> {
    Unpickler {
        data: bytes,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Default::default(),
    }
    .run()
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u32, Value>,
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
    fn sized_str(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        Ok(Value::Str(
            String::from_utf8(b.to_vec()).context("invalid UTF-8 string in pickle")?,
        ))
    }
    fn pop(&mut self) -> Result<Value> {
        self.stack
            .pop()
            .context("pickle stack underflow (corrupt pickle)")
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
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
    fn top(&mut self) -> Result<&mut Value> {
        self.stack
            .last_mut()
            .context("pickle stack underflow (corrupt pickle)")
    }
    fn memo_get(&self, i: u32) -> Result<Value> {
        self.memo
            .get(&i)
            .cloned()
            .with_context(|| format!("pickle memo slot {i} unset"))
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            if op == b'.' {
                return self.pop();
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
            b'(' => self.marks.push(self.stack.len()),
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            b'}' => self.stack.push(Value::Dict(Vec::new())),
            b']' => self.stack.push(Value::List(Vec::new())),
            b')' => self.stack.push(Value::Tuple(Vec::new())),
            0x8f => self.stack.push(Value::List(Vec::new())), // EMPTY_SET as list
            b'J' => {
                let v = self.u32()? as i32;
                self.stack.push(Value::Int(v as i64))
            }
            b'K' => {
                let v = self.u8()?;
                self.stack.push(Value::Int(v as i64))
            }
            b'M' => {
                let v = self.u16()?;
                self.stack.push(Value::Int(v as i64))
            }
            0x8a => {
                let n = self.u8()? as usize;
                let v = self.long(n)?;
                self.stack.push(v)
            }
            0x8b => {
                let n = self.u32()? as usize;
                let v = self.long(n)?;
                self.stack.push(v)
            }
            b'I' => {
                let l = self.line()?;
                let v = match l.as_str() {
                    "01" => Value::Bool(true),
                    "00" => Value::Bool(false),
                    s => Value::Int(s.trim().parse().context("bad INT")?),
                };
                self.stack.push(v)
            }
            b'L' => {
                let l = self.line()?;
                self.stack.push(Value::Int(
                    l.trim_end_matches('L').parse().context("bad LONG")?,
                ))
            }
            b'G' => {
                let v = f64::from_be_bytes(self.take(8)?.try_into()?);
                self.stack.push(Value::Float(v))
            }
            b'F' => {
                let l = self.line()?;
                self.stack
                    .push(Value::Float(l.trim().parse().context("bad FLOAT")?))
            }
            b'X' => {
                let n = self.u32()? as usize;
                let v = self.sized_str(n)?;
                self.stack.push(v)
            }
            0x8c => {
                let n = self.u8()? as usize;
                let v = self.sized_str(n)?;
                self.stack.push(v)
            }
            0x8d => {
                let n = self.u64()? as usize;
                let v = self.sized_str(n)?;
                self.stack.push(v)
            }
            b'V' => {
                let l = self.line()?;
                self.stack.push(Value::Str(l))
            }
            b'T' | b'B' => {
                let n = self.u32()? as usize;
                let b = self.take(n)?.to_vec();
                self.stack.push(Value::Bytes(b))
            }
            b'U' | b'C' => {
                let n = self.u8()? as usize;
                let b = self.take(n)?.to_vec();
                self.stack.push(Value::Bytes(b))
            }
            0x8e | 0x96 => {
                let n = self.u64()? as usize;
                let b = self.take(n)?.to_vec();
                self.stack.push(Value::Bytes(b))
            }
            b'S' => {
                let l = self.line()?;
                self.stack.push(Value::Str(
                    l.trim_matches(|c| c == '\'' || c == '"').to_string(),
                ))
            }
            b'q' => {
                let i = self.u8()? as u32;
                let v = self.top()?.clone();
                self.memo.insert(i, v);
            }
            b'r' => {
                let i = self.u32()?;
                let v = self.top()?.clone();
                self.memo.insert(i, v);
            }
            b'p' => {
                let i: u32 = self.line()?.trim().parse().context("bad PUT")?;
                let v = self.top()?.clone();
                self.memo.insert(i, v);
            }
            0x94 => {
                let i = self.memo.len() as u32;
                let v = self.top()?.clone();
                self.memo.insert(i, v);
            }
            b'h' => {
                let i = self.u8()? as u32;
                let v = self.memo_get(i)?;
                self.stack.push(v)
            }
            b'j' => {
                let i = self.u32()?;
                let v = self.memo_get(i)?;
                self.stack.push(v)
            }
            b'g' => {
                let i: u32 = self.line()?.trim().parse().context("bad GET")?;
                let v = self.memo_get(i)?;
                self.stack.push(v)
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.stack.push(Value::Global(format!("{module}.{name}")))
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => {
                        self.stack.push(Value::Global(format!("{m}.{n}")))
                    }
                    _ => bail!("STACK_GLOBAL expects two strings"),
                }
            }
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(items))
            }
            0x85 => {
                let a = self.pop()?;
                self.stack.push(Value::Tuple(vec![a]))
            }
            0x86 => {
                let b = self.pop()?;
                let a = self.pop()?;
                self.stack.push(Value::Tuple(vec![a, b]))
            }
            0x87 => {
                let c = self.pop()?;
                let b = self.pop()?;
                let a = self.pop()?;
                self.stack.push(Value::Tuple(vec![a, b, c]))
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::List(items))
            }
            b'd' => {
                let items = self.pop_mark()?;
                let dict = pairs(items)?;
                self.stack.push(Value::Dict(dict))
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.stack.push(Value::List(items)) // FROZENSET
            }
            b'a' => {
                let v = self.pop()?;
                push_items(self.top()?, vec![v])?
            }
            b'e' | 0x90 => {
                let items = self.pop_mark()?;
                push_items(self.top()?, items)?
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                set_items(self.top()?, vec![(k, v)])?
            }
            b'u' => {
                let items = self.pop_mark()?;
                let kv = pairs(items)?;
                set_items(self.top()?, kv)?
            }
            b'0' => {
                self.pop()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.stack.push(v)
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'Q' => {
                let pid = self.pop()?;
                self.stack.push(Value::PersId(Box::new(pid)))
            }
            b'P' => {
                let l = self.line()?;
                self.stack.push(Value::PersId(Box::new(Value::Str(l))))
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = reduce(callable, args)?;
                self.stack.push(v)
            }
            0x81 => {
                let _args = self.pop()?;
                let cls = self.pop()?;
                self.stack.push(instantiate(cls))
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let _args = self.pop()?;
                let cls = self.pop()?;
                self.stack.push(instantiate(cls))
            }
            b'i' => {
                let module = self.line()?;
                let name = self.line()?;
                self.pop_mark()?;
                self.stack.push(Value::Object(format!("{module}.{name}")))
            }
            b'o' => {
                let mut items = self.pop_mark()?;
                anyhow::ensure!(!items.is_empty(), "OBJ without class");
                let cls = items.remove(0);
                self.stack.push(instantiate(cls))
            }
            b'b' => {
                // BUILD: state is applied to stubs by ignoring it; dict-like objects keep items.
                self.pop()?;
            }
            _ => bail!("unsupported pickle opcode 0x{op:02x} (corrupt file or unknown protocol)"),
        }
        Ok(())
    }

    fn long(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        anyhow::ensure!(n <= 8, "integer of {n} bytes is too large");
        if n == 0 {
            return Ok(Value::Int(0));
        }
        let mut buf = if b[n - 1] & 0x80 != 0 {
            [0xffu8; 8]
        } else {
            [0u8; 8]
        };
        buf[..n].copy_from_slice(b);
        Ok(Value::Int(i64::from_le_bytes(buf)))
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
    anyhow::ensure!(items.len().is_multiple_of(2), "odd number of dict items");
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn push_items(target: &mut Value, items: Vec<Value>) -> Result<()> {
    match target {
        Value::List(l) => l.extend(items),
        Value::Object(_) => {} // appends to a stub are dropped
        other => bail!("APPEND to a {}", other.kind()),
    }
    Ok(())
}

fn set_items(target: &mut Value, kv: Vec<(Value, Value)>) -> Result<()> {
    match target {
        Value::Dict(d) => {
            for (k, v) in kv {
                match d.iter_mut().find(|(ek, _)| *ek == k) {
                    Some(slot) => slot.1 = v,
                    None => d.push((k, v)),
                }
            }
        }
        Value::Object(_) => {}
        other => bail!("SETITEM on a {}", other.kind()),
    }
    Ok(())
}

fn instantiate(cls: Value) -> Value {
    match cls {
        Value::Global(name) if name == "collections.OrderedDict" || name == "builtins.dict" => {
            Value::Dict(Vec::new())
        }
        Value::Global(name) => Value::Object(name),
        other => Value::Object(other.kind()),
    }
}

/// Applies a callable from the pickle. Only data constructors are interpreted; every other
/// callable yields an inert stub object naming it.
fn reduce(callable: Value, args: Value) -> Result<Value> {
    let Value::Global(name) = callable else {
        return Ok(Value::Object(callable.kind()));
    };
    let args = match args {
        Value::Tuple(a) => a,
        _ => return Ok(Value::Object(name)),
    };
    match name.as_str() {
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => rebuild_tensor(&args),
        "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
            Ok(args.into_iter().next().unwrap_or(Value::None))
        }
        "collections.OrderedDict" | "builtins.dict" => match args.into_iter().next() {
            Some(Value::List(items)) => {
                let mut d = Vec::new();
                for it in items {
                    if let Value::Tuple(mut kv) = it
                        && kv.len() == 2
                    {
                        let v = kv.pop().unwrap_or(Value::None);
                        let k = kv.pop().unwrap_or(Value::None);
                        d.push((k, v));
                    }
                }
                Ok(Value::Dict(d))
            }
            _ => Ok(Value::Dict(Vec::new())),
        },
        _ => Ok(Value::Object(name)),
    }
}

fn rebuild_tensor(args: &[Value]) -> Result<Value> {
    let (Some(storage), Some(offset), Some(size), Some(stride)) =
        (args.first(), args.get(1), args.get(2), args.get(3))
    else {
        bail!("_rebuild_tensor_v2 with {} arguments", args.len())
    };
    let (dtype, key) = match storage {
        Value::PersId(pid) => resolve_storage(pid)?,
        other => bail!(
            "tensor storage is a {}, expected a persistent id",
            other.kind()
        ),
    };
    Ok(Value::Tensor(TensorRef {
        storage_key: key,
        dtype,
        offset: as_usize(offset)?,
        shape: as_usize_list(size)?,
        stride: as_usize_list(stride)?,
    }))
}

/// Resolves `('storage', <torch.FloatStorage>, key, location, numel)`.
fn resolve_storage(pid: &Value) -> Result<(StorageDtype, String)> {
    let Value::Tuple(t) = pid else {
        bail!("persistent id is a {}", pid.kind())
    };
    match (t.first(), t.get(1), t.get(2)) {
        (Some(Value::Str(tag)), Some(Value::Global(class)), Some(Value::Str(key)))
            if tag == "storage" =>
        {
            let short = class.rsplit('.').next().unwrap_or(class);
            let dtype = StorageDtype::from_class(short)
                .with_context(|| format!("unsupported storage type `{class}`"))?;
            Ok((dtype, key.clone()))
        }
        _ => bail!("unrecognised persistent id {pid:?}"),
    }
}

fn as_usize(v: &Value) -> Result<usize> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        other => bail!("expected a non-negative integer, found {other:?}"),
    }
}

fn as_usize_list(v: &Value) -> Result<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(as_usize).collect(),
        other => bail!("expected a tuple of integers, found {}", other.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
