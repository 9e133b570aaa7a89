//! The unpickler's state and its reading of the stream: bytes, lines and integers, the stack,
//! the marks and the memo, and the loop that dispatches each opcode to its family.

use super::Budget;
use super::arena::{Arena, Id, Node};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::rc::Rc;

/// Runs the unpickler over `bytes`: the arena of everything built and the index of the root.
pub(super) fn read(bytes: &[u8], budget: &Budget) -> Result<(Arena, Id)> {
    Unpickler {
        data: bytes,
        pos: 0,
        arena: Arena::new(budget.max_nodes),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

pub(super) struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    pub(super) arena: Arena,
    pub(super) stack: Vec<Id>,
    pub(super) marks: Vec<usize>,
    /// Memo keys come from the file (any u32), hence a map and never a vector indexed by them.
    pub(super) memo: HashMap<u32, Id>,
}

impl Unpickler<'_> {
    pub(super) fn take(&mut self, n: usize) -> Result<&[u8]> {
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
    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }
    pub(super) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    pub(super) fn line(&mut self) -> Result<String> {
        let start = self.pos;
        while self.u8()? != b'\n' {}
        Ok(String::from_utf8_lossy(&self.data[start..self.pos - 1]).into_owned())
    }
    pub(super) fn sized_str(&mut self, n: usize) -> Result<Node> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).context("invalid UTF-8 string in pickle")?;
        Ok(Node::Str(Rc::from(s)))
    }
    pub(super) fn sized_bytes(&mut self, n: usize) -> Result<Node> {
        let b = self.take(n)?;
        Ok(Node::Bytes(Rc::from(b)))
    }
    /// Creates a node and pushes it.
    pub(super) fn push(&mut self, node: Node) -> Result<()> {
        let id = self.arena.add(node)?;
        self.push_id(id)
    }
    /// Pushes a reference to an existing node (GET, DUP, REDUCE returning an argument).
    pub(super) fn push_id(&mut self, id: Id) -> Result<()> {
        if self.stack.len() >= self.arena.max {
            bail!(
                "pickle stack exceeds the node budget of {} values (Budget::max_nodes)",
                self.arena.max
            )
        }
        self.stack.push(id);
        Ok(())
    }
    pub(super) fn pop(&mut self) -> Result<Id> {
        self.stack
            .pop()
            .context("pickle stack underflow (corrupt pickle)")
    }
    pub(super) fn pop_mark(&mut self) -> Result<Vec<Id>> {
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
    pub(super) fn top(&self) -> Result<Id> {
        self.stack
            .last()
            .copied()
            .context("pickle stack underflow (corrupt pickle)")
    }
    /// PUT: the memo refers to the node on top of the stack itself, not a copy.
    pub(super) fn memo_put(&mut self, i: u32) -> Result<()> {
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
    pub(super) fn memo_get(&mut self, i: u32) -> Result<()> {
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

    /// Executes one opcode (the byte after it is at `self.pos`), handing it to the first
    /// family of opcodes that knows it.
    fn step(&mut self, op: u8) -> Result<()> {
        let handled = self.stack_op(op)?
            || self.number(op)?
            || self.text(op)?
            || self.build_container(op)?
            || self.fill_container(op)?
            || self.memo_op(op)?
            || self.global_or_reduce(op)?
            || self.object(op)?;
        if !handled {
            bail!("unsupported pickle opcode 0x{op:02x} (corrupt file or unknown protocol)")
        }
        Ok(())
    }

    pub(super) fn long(&mut self, n: usize) -> Result<Node> {
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
}
