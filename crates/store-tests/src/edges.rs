//! The pool's paired edges: recorded, replaced under their name,
//! unpaired, and never brought back by an import of old records.

use store::{EdgeRow, Store};

fn edge(name: &str, fingerprint: &str, expires_at: i64) -> EdgeRow {
    EdgeRow {
        name: name.into(),
        internal: "10.0.0.2:5061".into(),
        external_names: vec!["edge.example.com".into(), "192.0.2.7".into()],
        fingerprint: fingerprint.into(),
        paired_at: 100,
        expires_at,
        keys_check: "0123456789abcdef".into(),
    }
}

/// The edges paired now: (name, fingerprint).
async fn paired<S: Store>(s: &S) -> Vec<(String, String)> {
    s.edges()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.fingerprint))
        .collect()
}

pub async fn edges_are_paired_replaced_unpaired_and_never_imported_back<S: Store>(s: S) {
    assert!(s.edges().await.unwrap().is_empty());
    s.put_edge(edge("edge1", "aa", 1000), 100).await.unwrap();
    s.put_edge(edge("edge2", "bb", 1000), 100).await.unwrap();
    assert_eq!(
        s.edges().await.unwrap(),
        vec![edge("edge1", "aa", 1000), edge("edge2", "bb", 1000)]
    );
    // Paired again: the new certificate only.
    s.put_edge(edge("edge1", "cc", 2000), 200).await.unwrap();
    let names = paired(&s).await;
    assert_eq!(
        names,
        vec![("edge1".into(), "cc".into()), ("edge2".into(), "bb".into())]
    );
    // Unpaired: gone, and only once.
    assert!(s.remove_edge("edge2", 300).await.unwrap());
    assert!(!s.remove_edge("edge2", 300).await.unwrap());
    assert!(!s.remove_edge("nobody", 300).await.unwrap());
    // Old records imported: neither the replaced certificate (aa) nor the
    // unpaired one (bb) comes back; a name paired now keeps its pairing;
    // an edge the store never knew is recorded.
    let n = s
        .import_edges(vec![
            edge("edge1", "aa", 1000),
            edge("edge2", "bb", 1000),
            edge("edge1", "dd", 1000),
            edge("edge3", "ee", 1000),
        ])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let names = paired(&s).await;
    assert_eq!(
        names,
        vec![("edge1".into(), "cc".into()), ("edge3".into(), "ee".into())]
    );
    // Once an unpaired certificate has expired it is forgotten (a write
    // after its expiry), and an import may record it again — it would
    // be refused anyway, expired.
    s.put_edge(edge("edge4", "ff", 5000), 1500).await.unwrap();
    assert_eq!(
        s.import_edges(vec![edge("edge2", "bb", 1000)])
            .await
            .unwrap(),
        1
    );
}
