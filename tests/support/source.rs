//! The MongoDB side of a test, reached over TCP through the official driver: mongosim started
//! in-process on port 0, or the replica set named by `MONGO_URL` (each test then uses databases
//! of its own).

/// A MongoDB source.
pub struct Source {
    pub uri: String,
    /// Present when the test runs against mongosim (the default).
    pub sim: Option<mongosim::SimHandle>,
    pub client: mongodb::Client,
}

impl Source {
    /// mongosim in-process, or the replica set named by `MONGO_URL`.
    pub async fn start() -> Source {
        super::init_tracing();
        let (uri, sim) = match std::env::var("MONGO_URL") {
            Ok(url) if !url.is_empty() => (url, None),
            _ => {
                let sim = mongosim::start(mongosim::SimConfig::default())
                    .await
                    .expect("start mongosim");
                (sim.uri(), Some(sim))
            }
        };
        let client = mongodb::Client::with_uri_str(&uri)
            .await
            .expect("mongodb client");
        Source { uri, sim, client }
    }

    /// mongosim in-process with `config` (tests of simulator-only settings, such as a clock
    /// past 2038; with `MONGO_URL` set they fail with the usual message).
    pub async fn start_sim(config: mongosim::SimConfig) -> Source {
        super::init_tracing();
        assert!(
            std::env::var("MONGO_URL").map_or(true, |u| u.is_empty()),
            "this test needs mongosim's controls (unset MONGO_URL)"
        );
        let sim = mongosim::start(config).await.expect("start mongosim");
        let uri = sim.uri();
        let client = mongodb::Client::with_uri_str(&uri)
            .await
            .expect("mongodb client");
        Source {
            uri,
            sim: Some(sim),
            client,
        }
    }

    /// The simulator, for tests that need its fault controls.
    pub fn sim(&self) -> &mongosim::SimHandle {
        self.sim
            .as_ref()
            .expect("this test needs mongosim's controls (unset MONGO_URL)")
    }

    pub fn coll(&self, db: &str, name: &str) -> mongodb::Collection<bson::Document> {
        self.client.database(db).collection(name)
    }

    pub async fn stop(self) {
        if let Some(sim) = self.sim {
            sim.shutdown().await;
        }
    }
}
