//! Regression: four updates delivered in this order left yrs 0.28.1 with a parked update it
//! never retried (it recorded the wrong missing client), so the replica stayed behind although
//! it had received everything. Minimised from the convergence property test (seed 043e4b22…).

use weaver_doc::Workspace;
use weaver_doc::yrs::{ReadTxn, Transact};

/// 1: an item of client 101 after 100#36; 2: client 100's clocks 0..27; 3: 100#46 after 101#0
/// (so it also waits for 100#27..46); 4: 100#32..37, which makes 101#0 applicable.
const UPDATES: [&str; 4] = [
    concat!(
        "0101650088642401760307617474656d70747d020261747b427a22f12826c00006737461747573770a6e6f7453746172",
        "74656400",
    ),
    concat!(
        "01126400270106626c6f636b730161012800640002696401770161280064000474797065017704746578742700640007",
        "636f6e74656e7402040064030473656564270064000c696e646578696e674c69737400270106626c6f636b730562f09f",
        "9880012800640902696401770562f09f9880280064090474797065017704746578742700640907636f6e74656e740204",
        "00640c0473656564270064090c696e646578696e674c69737400270106626c6f636b7301630128006412026964017701",
        "63280064120474797065017704746578742700641207636f6e74656e7402040064150473656564270064120c696e6465",
        "78696e674c6973740000",
    ),
    concat!(
        "0101642e88650001760307617474656d70747d030261747b427a22f12826d00006737461747573770a6e6f7453746172",
        "74656400",
    ),
    concat!(
        "010564200700641101280064200a696e6465785f6e616d650177067365617263682800642012636f6c6c656374696f6e",
        "5f636f6e666967730176010262797d00270064200a7374617475735f6c6f67000800642301760307617474656d70747d",
        "0106737461747573770a6e6f74537461727465640261747b427a22f12826c00000",
    ),
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_parked_update_is_integrated_once_its_dependencies_arrive() {
    let late = Workspace::with_client_id(1);
    for u in UPDATES {
        late.apply_update_v1(&unhex(u), "relay").unwrap();
    }
    // The same updates applied until nothing changes: the state every replica must reach.
    let reference = Workspace::with_client_id(2);
    for _ in 0..3 {
        for u in UPDATES {
            reference.apply_update_v1(&unhex(u), "relay").unwrap();
        }
    }
    let sv = |w: &Workspace| w.doc().transact().state_vector();
    assert!(!reference.doc().transact().has_missing_updates());
    assert_eq!(sv(&late), sv(&reference));
    // 101#0 was applied: the pending list is empty, not merely equal by accident.
    assert!(!late.doc().transact().has_missing_updates());
    assert_eq!(late.to_json().unwrap(), reference.to_json().unwrap());
}
