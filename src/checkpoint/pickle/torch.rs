//! What torch pickles call: tensors rebuilt from persistent-id storages, parameters, and
//! dicts / OrderedDicts made by REDUCE or NEWOBJ; every other callable becomes an inert stub.

use super::StorageDtype;
use super::arena::{Id, Node, TensorNode, node_kind};
use super::machine::Unpickler;
use anyhow::{Context, Result, bail};
use std::rc::Rc;

impl Unpickler<'_> {
    /// NEWOBJ / OBJ: dict classes become empty dicts (filled by later SETITEMS), every other
    /// class an inert stub.
    pub(super) fn instantiate(&self, cls: Id) -> Node {
        match &self.arena.nodes[cls] {
            Node::Global(name) if is_dict_class(name) => Node::Dict(Box::default()),
            Node::Global(name) => Node::Object(name.clone()),
            other => Node::Object(node_kind(other).into()),
        }
    }

    /// Applies a callable from the pickle. Only data constructors are interpreted; every other
    /// callable yields an inert stub object naming it. Returns the resulting node, which for
    /// `_rebuild_parameter` is its argument itself.
    pub(super) fn reduce(&mut self, callable: Id, args: Id) -> Result<Id> {
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
            n if is_dict_class(n) => self.dict_from_args(args.first().copied()),
            _ => self.arena.add(Node::Object(name)),
        }
    }

    /// `dict(pairs)` / `OrderedDict(pairs)`: a new dict node of the pairs in `source`, a list
    /// of 2-tuples or a dict (either may be a shared memo node, which is left as it is).
    fn dict_from_args(&mut self, source: Option<Id>) -> Result<Id> {
        let len = match source.map(|a| &self.arena.nodes[a]) {
            Some(Node::List(items)) => items.len(),
            Some(Node::Dict(d)) => d.items.len(),
            _ => 0,
        };
        self.arena.charge(len)?;
        let source = source.map(|a| &self.arena.nodes[a]);
        let kv: Vec<(Id, Id)> = match source {
            Some(Node::List(items)) => items
                .iter()
                .filter_map(|&it| match &self.arena.nodes[it] {
                    Node::Tuple(kv) | Node::List(kv) if kv.len() == 2 => Some((kv[0], kv[1])),
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
