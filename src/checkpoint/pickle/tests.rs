//! Unit tests of the pickle reader: opcodes, memo sharing, torch fixtures, and hostile
//! pickles (doubling bombs, deep nesting, cycles, random mutations) against the budgets.

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
