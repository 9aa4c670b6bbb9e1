//! A note-taking replica: adds a block to ROOM in a local replica, pushes it when the server is
//! reachable, and prints the room. Run it twice, with the server stopped the first time:
//!
//! ```sh
//! cargo run -p weaver-client --example notes -- ws://127.0.0.1:1234 notes ./notes-replica
//! ```

use std::time::Duration;

use weaver_client::{Client, ClientEvent, ClientOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "ws://127.0.0.1:1234".into());
    let room = args.next().unwrap_or_else(|| "notes".into());
    let dir = args.next().unwrap_or_else(|| "./notes-replica".into());

    let client = Client::open(ClientOptions::new(server, room, dir))?;
    let mut events = client.subscribe();
    client.set_awareness(Some(
        &serde_json::json!({"user": {"name": "notes example"}}),
    ))?;

    // Durable in the replica when this returns, online or not.
    let id = format!("note-{}", client.blocks()?.len() + 1);
    client.transact(|t| t.add_block(&id, "text", "written by the notes example"))??;
    println!(
        "added {id}; {} update(s) not on the server yet",
        client.unsynced()
    );

    match tokio::time::timeout(Duration::from_secs(3), client.synced()).await {
        Ok(()) => println!("the server holds everything ({:?})", client.state()),
        Err(_) => println!("offline ({:?}): pushed on a later run", client.state()),
    }
    while let Ok(ev) = events.try_recv() {
        if let ClientEvent::Changed(cs) = ev {
            println!("change from {:?}: {} item(s)", cs.origin, cs.changes.len());
        }
    }
    println!("{}", serde_json::to_string_pretty(&client.to_json()?)?);
    client.close().await;
    Ok(())
}
