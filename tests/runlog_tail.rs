//! The run-log tail reader on hostile and growing files: line-by-line and byte-by-byte growth, a
//! partial last line, a corrupt middle line, random bytes, over-long lines, rewrites, newer versions.

use mimr::runlog::{Event, Item, Tail, read_all};
use std::io::Write;
use std::path::Path;

fn lines() -> Vec<String> {
    let mut v = vec![
        r#"{"type":"header","version":1,"minor":1,"kind":"refine","heads":["main"],"dataset":"d","device":"cpu"}"#.to_string(),
    ];
    for s in 1..=5 {
        v.push(format!(
            r#"{{"type":"step","step":{s},"epoch":0,"stage":2,"lr":0.1,"img_per_s":3.5,"heads":{{"main":{{"loss":1.5,"nn_similarity":0.5,"nn_accuracy":null,"global_alignment":0.1,"local_alignment":0.2}}}}}}"#
        ));
        v.push(format!(r#"{{"type":"future_event_kind","step":{s}}}"#));
    }
    v.push(r#"{"type":"end","step":5}"#.into());
    v
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn events(items: &[Item]) -> Vec<Event> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Event { event, .. } => Some(event.clone()),
            _ => None,
        })
        .collect()
}

/// The events of the whole file, read in one go.
fn expected(path: &Path) -> Vec<Event> {
    let r = read_all(path).unwrap();
    assert!(r.notices.is_empty(), "{:?}", r.notices);
    r.events
}

#[test]
fn growth_line_by_line_and_byte_by_byte_yields_every_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let text = lines().join("\n") + "\n";
    std::fs::write(&a, &text).unwrap();
    let want = expected(&a);
    assert_eq!(want.len(), 7, "header, 5 steps, end; unknown types skipped");
    let mut tail = Tail::new(&b);
    assert!(
        tail.poll().is_err(),
        "a missing file is an error, not a panic"
    );
    let mut got = Vec::new();
    for l in lines() {
        append(&b, format!("{l}\n").as_bytes());
        got.extend(events(&tail.poll().unwrap()));
    }
    assert_eq!(got, want);
    let c = dir.path().join("c.jsonl");
    let mut tail = Tail::new(&c);
    append(&c, b"");
    let mut got = Vec::new();
    for byte in text.as_bytes() {
        append(&c, std::slice::from_ref(byte));
        let items = tail.poll().unwrap();
        assert!(
            items.iter().all(|i| matches!(i, Item::Event { .. })),
            "{items:?}"
        );
        got.extend(events(&items));
    }
    assert_eq!(got, want);
}

#[test]
fn a_partial_last_line_waits_and_a_corrupt_middle_line_is_reported_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("e.jsonl");
    let l = lines();
    let (head, rest) = l[1].split_at(40);
    append(&p, format!("{}\n{head}", l[0]).as_bytes());
    let mut tail = Tail::new(&p);
    assert_eq!(events(&tail.poll().unwrap()).len(), 1);
    assert!(tail.has_partial_line());
    assert_eq!(
        read_all(&p).unwrap().notices.len(),
        1,
        "partial line noticed"
    );
    append(
        &p,
        format!("{rest}\n{{\"type\":\"step\",\"step\":\n\u{0}\u{ff}garbage\n").as_bytes(),
    );
    append(&p, format!("{}\n", l[3]).as_bytes());
    let items = tail.poll().unwrap();
    let skipped: Vec<u64> = items
        .iter()
        .filter_map(|i| match i {
            Item::Skipped { line, .. } => Some(*line),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, vec![3, 4]);
    let steps: Vec<Option<u64>> = events(&items).iter().map(Event::step).collect();
    assert_eq!(steps, vec![Some(1), Some(2)]);
    assert!(!tail.has_partial_line());
}

#[test]
fn random_bytes_and_over_long_lines_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..50 {
        let p = dir.path().join(format!("r{round}.jsonl"));
        let mut tail = Tail::new(&p);
        for _ in 0..20 {
            let n = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..n)
                .map(|_| match next() % 8 {
                    0 => b'\n',
                    1 => b'{',
                    2 => b'"',
                    _ => next() as u8,
                })
                .collect();
            append(&p, &bytes);
            for item in tail.poll().unwrap() {
                assert!(!matches!(item, Item::Refused { .. }));
            }
        }
    }
    // a 17 MiB line without an event in it is skipped; the next line is read
    let p = dir.path().join("long.jsonl");
    let mut tail = Tail::new(&p);
    append(&p, &vec![b'x'; 17 << 20]);
    assert!(tail.poll().unwrap().is_empty());
    append(&p, b"\n{\"type\":\"end\",\"step\":3}\n");
    let items = tail.poll().unwrap();
    assert!(
        matches!(items[0], Item::Skipped { line: 1, .. }),
        "{items:?}"
    );
    assert_eq!(events(&items), vec![Event::End { step: 3 }]);
}

#[test]
fn a_rewritten_log_restarts_and_a_newer_major_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.jsonl");
    let l = lines();
    std::fs::write(&p, l[..6].join("\n") + "\n").unwrap();
    let mut tail = Tail::new(&p);
    assert_eq!(events(&tail.poll().unwrap()).len(), 4);
    // a resume cuts the log back to a checkpoint's offset and writes the same steps again,
    // (with other timings), longer than before by the time the reader looks
    std::fs::write(&p, l[..2].join("\n") + "\n").unwrap();
    append(
        &p,
        (l[2..].join("\n").replace("3.5", "4.5") + "\n").as_bytes(),
    );
    let items = tail.poll().unwrap();
    assert_eq!(items[0], Item::Restarted);
    assert_eq!(events(&items), expected(&p));
    let v = dir.path().join("v.jsonl");
    std::fs::write(
        &v,
        format!(
            "{}\n{}\n",
            l[0].replace("\"version\":1", "\"version\":2"),
            l[1]
        ),
    )
    .unwrap();
    let items = Tail::new(&v).poll().unwrap();
    let [Item::Refused { message }] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert!(
        message.contains("version 2") && message.contains("update mimr"),
        "{message}"
    );
    assert!(read_all(&v).is_err());
}

#[test]
fn a_partial_line_rewritten_by_a_resume_is_read_anew_and_any_newer_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.jsonl");
    let header = &lines()[0];
    std::fs::write(&p, format!("{header}\n{{\"type\":\"end\",\"step\":1")).unwrap();
    let mut tail = Tail::new(&p);
    assert_eq!(events(&tail.poll().unwrap()).len(), 1);
    // killed mid-line; the resumed run cut the line away and wrote another of the same length
    std::fs::write(&p, format!("{header}\n{{\"type\":\"end\",\"step\":2}}\n")).unwrap();
    assert_eq!(events(&tail.poll().unwrap()), vec![Event::End { step: 2 }]);
    // a version-2 header need not parse as today's: it is refused all the same
    let v = dir.path().join("v2.jsonl");
    std::fs::write(
        &v,
        "{\"type\":\"header\",\"version\":2,\"heads\":{\"main\":3}}\n",
    )
    .unwrap();
    let items = Tail::new(&v).poll().unwrap();
    assert!(
        matches!(items.as_slice(), [Item::Refused { .. }]),
        "{items:?}"
    );
}

#[test]
fn damaged_lines_are_reported_up_to_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk.jsonl");
    std::fs::write(&p, "x\n".repeat(50_000)).unwrap();
    let items = Tail::new(&p).poll().unwrap();
    assert_eq!(items.len() as u64, mimr::runlog::tail::MAX_REPORTED);
    let Item::Skipped { reason, .. } = items.last().unwrap() else {
        panic!("{:?}", items.last())
    };
    assert!(reason.contains("without a report"), "{reason}");
}
