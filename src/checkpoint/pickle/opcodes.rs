//! The opcodes, by family: each handler executes the opcodes of its family and answers
//! whether it knew the opcode, so `Unpickler::step` tries the families in turn.

use super::arena::{Id, Node};
use super::machine::Unpickler;
use anyhow::{Context, Result, bail};

impl Unpickler<'_> {
    /// Stack control: PROTO, FRAME, MARK, POP, DUP, POP_MARK.
    pub(super) fn stack_op(&mut self, op: u8) -> Result<bool> {
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
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Constants and numbers: NONE, NEWTRUE, NEWFALSE, BININT, BININT1, BININT2, LONG1, LONG4,
    /// INT, LONG, BINFLOAT, FLOAT.
    pub(super) fn number(&mut self, op: u8) -> Result<bool> {
        match op {
            b'N' => self.push(Node::None)?,
            0x88 => self.push(Node::Bool(true))?,
            0x89 => self.push(Node::Bool(false))?,
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
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Strings and byte strings: (SHORT_)BINUNICODE(8), UNICODE, STRING, (SHORT_)BINBYTES(8),
    /// BYTEARRAY8, and protocol 1's (SHORT_)BINSTRING, which are read as bytes.
    pub(super) fn text(&mut self, op: u8) -> Result<bool> {
        match op {
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
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Containers built whole: EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, EMPTY_SET, TUPLE,
    /// TUPLE1–3, LIST, DICT and FROZENSET (sets are read as lists).
    pub(super) fn build_container(&mut self, op: u8) -> Result<bool> {
        match op {
            b'}' => self.push(Node::Dict(Box::default()))?,
            b']' => self.push(Node::List(Vec::new()))?,
            b')' => self.push(Node::Tuple(Vec::new()))?,
            0x8f => self.push(Node::List(Vec::new()))?, // EMPTY_SET as list
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
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Containers filled in place: APPEND, APPENDS, ADDITEMS, SETITEM, SETITEMS.
    pub(super) fn fill_container(&mut self, op: u8) -> Result<bool> {
        match op {
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
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The memo: PUT, BINPUT, LONG_BINPUT, MEMOIZE, GET, BINGET, LONG_BINGET.
    pub(super) fn memo_op(&mut self, op: u8) -> Result<bool> {
        match op {
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
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Class references, persistent ids and calls: GLOBAL, STACK_GLOBAL, BINPERSID, PERSID,
    /// REDUCE.
    pub(super) fn global_or_reduce(&mut self, op: u8) -> Result<bool> {
        match op {
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
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Objects: NEWOBJ, NEWOBJ_EX, INST, OBJ and BUILD; every one is a dict or an inert stub.
    pub(super) fn object(&mut self, op: u8) -> Result<bool> {
        match op {
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
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn pairs(items: Vec<Id>) -> Result<Vec<(Id, Id)>> {
    anyhow::ensure!(items.len().is_multiple_of(2), "odd number of dict items");
    Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
}
