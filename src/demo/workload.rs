//! The demo's deterministic marketplace workload for the reference mapping: a seed (users with
//! passkeys and refresh tokens, a category tree, addresses, purchase requests with delivery info
//! and preferred sellers, seller offers, request templates, payments with both kinds of mixed ids
//! and Decimal128 amounts, ledger entries, and a few deliberately bad documents) and a sequence of
//! live writes (inserts, updates, deletes, payments completing in a MongoDB transaction with their
//! ledger entry and the buyer's points). Every id, value and time derives
//! from a counter, so two runs write the same documents.
//!
//! Live writes only reference documents of the seed (already copied before streaming starts), so
//! the independent per-collection streams never see a child before its parent.

use std::collections::BTreeMap;

use bson::{doc, oid::ObjectId, Bson, DateTime, Decimal128, Document};

use crate::event::ClusterTime;

pub const USERS: u32 = 40;
pub const CATEGORIES: u32 = 8;
pub const ADDRESSES: u32 = 30;
pub const REQUESTS: u32 = 20;
pub const OFFERS: u32 = 30;
pub const TEMPLATES: u32 = 6;
pub const PAYMENTS: u32 = 30;
pub const LEDGER: u32 = 40;
/// First counter of documents inserted live (seed ids stay below it).
const LIVE_BASE: u32 = 10_000;
/// 2026-01-01T00:00:00Z: the seed's clock.
const BASE_MILLIS: i64 = 1_767_225_600_000;

/// A deterministic ObjectId: `tag` says which collection, `n` which document.
pub fn oid(tag: u8, n: u32) -> ObjectId {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&0x6500_0000u32.to_be_bytes());
    b[4] = tag;
    b[8..].copy_from_slice(&n.to_be_bytes());
    ObjectId::from_bytes(b)
}

const T_USER: u8 = 1;
const T_CATEGORY: u8 = 2;
const T_ADDRESS: u8 = 3;
const T_REQUEST: u8 = 4;
const T_OFFER: u8 = 5;
const T_TEMPLATE: u8 = 6;
const T_PAYMENT: u8 = 7;
const T_LEDGER: u8 = 8;

fn at(minutes: i64) -> DateTime {
    DateTime::from_millis(BASE_MILLIS + minutes * 60_000)
}

/// A decimal literal as Decimal128; the literals below are all valid.
fn dec(text: &str) -> Bson {
    match text.parse::<Decimal128>() {
        Ok(d) => Bson::Decimal128(d),
        Err(_) => Bson::String(text.to_string()),
    }
}

/// Decimal128 NaN (a deliberately bad money amount).
fn dec_nan() -> Bson {
    let mut bytes = [0u8; 16];
    bytes[15] = 0x7C;
    Bson::Decimal128(Decimal128::from_bytes(bytes))
}

/// `a.bc` with two decimals from an integer number of cents.
fn money(cents: u64) -> Bson {
    dec(&format!("{}.{:02}", cents / 100, cents % 100))
}

fn is_seller(i: u32) -> bool {
    i.is_multiple_of(4)
}

fn buyer_of(i: u32) -> ObjectId {
    // Users 1, 2, 3, 5, 6, 7, ...: never a seller.
    let n = i % (USERS - USERS / 4);
    oid(T_USER, n + n / 3 + 1)
}

fn seller_of(i: u32) -> ObjectId {
    oid(T_USER, (i % (USERS / 4)) * 4)
}

fn user_doc(i: u32, live: bool) -> Document {
    let mut d = doc! {
        "_id": oid(T_USER, i),
        "email": format!("user{i}@example.com"),
        "username": format!("user{i}"),
        "role": if is_seller(i) { "seller" } else { "user" },
        "referralCode": format!("REF{i:05}"),
        "points": i64::from(i) * 10,
        "isVerified": !i.is_multiple_of(3),
        "walletAddress": format!("0x{:040x}", u64::from(i) * 7919),
        "createdAt": at(i64::from(i)),
        "updatedAt": at(i64::from(i)),
        "passkeys": [],
        "refreshTokens": [],
    };
    if i > 0 && !live {
        d.insert("referredBy", oid(T_USER, (i - 1) / 2));
    } else if live {
        d.insert("referredBy", oid(T_USER, i % USERS));
    }
    if i.is_multiple_of(3) {
        d.insert(
            "passkeys",
            vec![Bson::Document(doc! {
                "credentialID": format!("cred-{i}"), "publicKey": format!("pk-{i}"),
                "counter": i64::from(i), "transports": ["usb", "internal"],
                "deviceName": "laptop", "createdAt": at(i64::from(i)),
            })],
        );
    }
    if i.is_multiple_of(2) {
        d.insert(
            "refreshTokens",
            vec![Bson::Document(doc! {
                "token": format!("rt-{i}"), "userAgent": "demo",
                "createdAt": at(i64::from(i)), "expiresAt": at(i64::from(i) + 43_200),
            })],
        );
    }
    d
}

fn category_doc(i: u32) -> Document {
    let mut d = doc! {
        "_id": oid(T_CATEGORY, i), "name": format!("Category {i}"), "nameEn": format!("Category {i}"),
        "slug": format!("category-{i}"), "isActive": true, "sortOrder": i64::from(i),
        "createdAt": at(0), "updatedAt": at(0),
    };
    if i >= 3 {
        d.insert("parentId", oid(T_CATEGORY, i % 3));
    }
    d
}

fn address_doc(n: u32, user: ObjectId, primary: bool) -> Document {
    doc! {
        "_id": oid(T_ADDRESS, n), "userId": user, "type": "shipping",
        "fullName": format!("Person {n}"), "phone": format!("+90555{n:07}"),
        "street": format!("{n} Main St"), "city": "Izmir", "country": "TR",
        "postalCode": format!("35{n:03}"), "isPrimary": primary,
        "createdAt": at(i64::from(n)), "updatedAt": at(i64::from(n)),
    }
}

fn request_doc(i: u32) -> Document {
    doc! {
        "_id": oid(T_REQUEST, i), "buyerId": buyer_of(i), "title": format!("Request {i}"),
        "description": "wanted", "status": "active", "budget": money(10_000 + u64::from(i) * 1_234),
        "budgetCurrency": "USDT", "quantity": 1 + i64::from(i % 3), "tags": ["demo", if i.is_multiple_of(2) { "tech" } else { "home" }],
        "categoryId": oid(T_CATEGORY, i % CATEGORIES), "offers": [],
        "preferredSellerIds": [seller_of(i), seller_of(i + 1)],
        "deliveryInfo": { "method": "courier", "recipientName": format!("Person {i}"), "city": "Izmir", "country": "TR" },
        "isDeleted": false, "createdAt": at(i64::from(i)), "updatedAt": at(i64::from(i)),
    }
}

fn offer_doc(n: u32, request: u32) -> Document {
    doc! {
        "_id": oid(T_OFFER, n), "purchaseRequestId": oid(T_REQUEST, request), "sellerId": seller_of(n),
        "price": money(9_000 + u64::from(n) * 777), "currency": "USDT", "deliveryDays": 3 + i64::from(n % 5),
        "message": format!("offer {n}"), "status": "pending",
        "createdAt": at(i64::from(n)), "updatedAt": at(i64::from(n)),
    }
}

fn template_doc(i: u32) -> Document {
    doc! {
        "_id": oid(T_TEMPLATE, i), "sellerId": seller_of(i), "categoryId": oid(T_CATEGORY, i % CATEGORIES),
        "title": format!("Template {i}"), "price": money(2_500 + u64::from(i) * 100), "currency": "USDT",
        "maxUsage": 1_000_000i64, "usageCount": 0i64, "isActive": true, "images": [format!("img-{i}.png")],
        "attributes": { "size": "M", "color": "blue" }, "createdAt": at(0), "updatedAt": at(0),
    }
}

/// Entity payments (ObjectIds; every third seller id as a 24-hex string) and template checkouts
/// (free strings), alternating.
fn payment_doc(n: u32, status: &str) -> Document {
    let amount = money(1_000 + u64::from(n) * 1_111);
    let mut d = doc! {
        "_id": oid(T_PAYMENT, n), "buyerId": buyer_of(n), "amount": { "value": amount, "currency": "USDT" },
        "provider": "request.network", "direction": "in", "status": status,
        "providerPaymentId": format!("0x{:064x}", u64::from(n) * 104_729), "isRefunded": false,
        "blockchain": { "network": "tron", "confirmations": i64::from(n % 20) },
        "metadata": { "source": "demo", "n": i64::from(n) },
        "createdAt": at(i64::from(n)), "updatedAt": at(i64::from(n)),
    };
    if n.is_multiple_of(2) {
        let offer = n % OFFERS;
        d.insert("purchaseRequestId", oid(T_REQUEST, offer % REQUESTS));
        d.insert("sellerOfferId", oid(T_OFFER, offer));
        if n.is_multiple_of(3) {
            d.insert("sellerId", seller_of(offer).to_hex());
        } else {
            d.insert("sellerId", seller_of(offer));
        }
    } else {
        d.insert("purchaseRequestId", format!("tpl-checkout-{n}"));
        d.insert("sellerOfferId", format!("tpl-offer-{}", n % TEMPLATES));
        d.insert("sellerId", format!("shop:{}", n % 7));
    }
    if status == "completed" {
        d.insert("completedAt", at(i64::from(n) + 5));
        d.insert("escrowState", "released");
    }
    d
}

fn ledger_doc(n: u32) -> Document {
    let types = ["credit", "debit", "hold", "release", "fee"];
    let mut d = doc! {
        "_id": oid(T_LEDGER, n), "userId": buyer_of(n), "type": types[(n % 5) as usize],
        "amount": money(100 + u64::from(n) * 55), "currency": "USDT",
        "idempotencyKey": format!("ledger-{n}"), "description": format!("entry {n}"),
        "metadata": { "demo": true }, "createdAt": at(i64::from(n)),
    };
    match n % 3 {
        0 => {
            d.insert("paymentId", oid(T_PAYMENT, n % PAYMENTS));
        }
        1 => {
            d.insert("purchaseRequestId", format!("tpl-checkout-{n}"));
            d.insert("paymentId", format!("ext-pay-{n}"));
        }
        _ => {
            d.insert("purchaseRequestId", oid(T_REQUEST, n % REQUESTS));
        }
    }
    d
}

/// Documents the mapping rejects on purpose: each becomes a gap, never a row.
pub fn bad_documents() -> Vec<(&'static str, Document)> {
    let mut nan_payment = payment_doc(PAYMENTS + 1, "pending");
    nan_payment.insert("amount", doc! { "value": dec_nan(), "currency": "USDT" });
    vec![
        ("payments", nan_payment),
        (
            "addresses",
            doc! { "_id": oid(T_ADDRESS, ADDRESSES + 1), "userId": "user-42", "city": "Izmir", "isPrimary": false },
        ),
        (
            "categories",
            doc! { "_id": oid(T_CATEGORY, CATEGORIES + 1), "name": "Broken\u{0}Name", "isActive": false },
        ),
    ]
}

/// The seed, collection by collection, in the order the application would have written it.
pub fn seed_documents() -> Vec<(&'static str, Vec<Document>)> {
    let mut out: Vec<(&'static str, Vec<Document>)> = vec![
        ("users", (0..USERS).map(|i| user_doc(i, false)).collect()),
        ("categories", (0..CATEGORIES).map(category_doc).collect()),
        (
            "addresses",
            (0..ADDRESSES)
                .map(|n| address_doc(n, oid(T_USER, n), true))
                .collect(),
        ),
        ("purchaserequests", (0..REQUESTS).map(request_doc).collect()),
        (
            "selleroffers",
            (0..OFFERS).map(|n| offer_doc(n, n % REQUESTS)).collect(),
        ),
        (
            "requesttemplates",
            (0..TEMPLATES).map(template_doc).collect(),
        ),
        (
            "payments",
            (0..PAYMENTS)
                .map(|n| {
                    payment_doc(
                        n,
                        if n.is_multiple_of(3) {
                            "completed"
                        } else {
                            "processing"
                        },
                    )
                })
                .collect(),
        ),
        ("fundsledgerentries", (0..LEDGER).map(ledger_doc).collect()),
    ];
    for (coll, d) in bad_documents() {
        if let Some((_, docs)) = out.iter_mut().find(|(c, _)| *c == coll) {
            docs.push(d);
        }
    }
    out
}

/// Writes the seed and then live changes, remembering the cluster time of each collection's
/// last write (what the final catch-up waits for).
pub struct Workload {
    db: mongodb::Database,
    session: mongodb::ClientSession,
    step: u32,
    live_addresses: Vec<ObjectId>,
    live_payments: Vec<u32>,
    /// Per collection, the cluster time of its last write.
    pub last_write: BTreeMap<String, ClusterTime>,
    /// Writes done so far (seed documents included).
    pub writes: u64,
}

impl Workload {
    pub async fn new(client: &mongodb::Client, database: &str) -> mongodb::error::Result<Self> {
        Ok(Workload {
            db: client.database(database),
            session: client.start_session().await?,
            step: 0,
            live_addresses: Vec::new(),
            live_payments: Vec::new(),
            last_write: BTreeMap::new(),
            writes: 0,
        })
    }

    fn record(&mut self, collection: &str, count: u64) {
        self.writes += count;
        if let Some(t) = self.session.operation_time() {
            self.last_write
                .insert(collection.to_string(), ClusterTime::from(t));
        }
    }

    /// Inserts the seed; returns the number of documents per collection.
    pub async fn seed(&mut self) -> mongodb::error::Result<Vec<(&'static str, usize)>> {
        let mut counts = Vec::new();
        for (collection, docs) in seed_documents() {
            let n = docs.len();
            self.db
                .collection::<Document>(collection)
                .insert_many(docs)
                .session(&mut self.session)
                .await?;
            self.record(collection, n as u64);
            counts.push((collection, n));
        }
        Ok(counts)
    }

    async fn insert(&mut self, collection: &str, d: Document) -> mongodb::error::Result<()> {
        self.db
            .collection::<Document>(collection)
            .insert_one(d)
            .session(&mut self.session)
            .await?;
        self.record(collection, 1);
        Ok(())
    }

    async fn update(
        &mut self,
        collection: &str,
        id: ObjectId,
        set: Document,
    ) -> mongodb::error::Result<()> {
        self.db
            .collection::<Document>(collection)
            .update_one(doc! {"_id": id}, doc! {"$set": set})
            .session(&mut self.session)
            .await?;
        self.record(collection, 1);
        Ok(())
    }

    async fn delete(&mut self, collection: &str, id: ObjectId) -> mongodb::error::Result<()> {
        self.db
            .collection::<Document>(collection)
            .delete_one(doc! {"_id": id})
            .session(&mut self.session)
            .await?;
        self.record(collection, 1);
        Ok(())
    }

    /// A payment completes in ONE MongoDB transaction, as the money core does it: the payment's
    /// status, its ledger entry and the buyer's points (atomic in Postgres within a stream group).
    async fn complete_payment(
        &mut self,
        p: u32,
        n: u32,
        now: DateTime,
    ) -> mongodb::error::Result<()> {
        self.session.start_transaction().await?;
        let set = doc! { "status": "completed", "escrowState": "released", "completedAt": now, "updatedAt": now };
        let mut entry = ledger_doc(n);
        entry.insert("type", "debit");
        entry.insert("paymentId", oid(T_PAYMENT, p));
        entry.remove("purchaseRequestId");
        let written = async {
            self.db
                .collection::<Document>("payments")
                .update_one(doc! {"_id": oid(T_PAYMENT, p)}, doc! {"$set": set})
                .session(&mut self.session)
                .await?;
            self.db
                .collection::<Document>("fundsledgerentries")
                .insert_one(entry)
                .session(&mut self.session)
                .await?;
            self.db
                .collection::<Document>("users")
                .update_one(
                    doc! {"_id": buyer_of(p)},
                    doc! {"$inc": {"points": 10_i64}, "$set": {"updatedAt": now}},
                )
                .session(&mut self.session)
                .await?;
            Ok::<(), mongodb::error::Error>(())
        }
        .await;
        if let Err(e) = written {
            let _ = self.session.abort_transaction().await;
            return Err(e);
        }
        self.session.commit_transaction().await?;
        for collection in ["payments", "fundsledgerentries", "users"] {
            self.record(collection, 1);
        }
        Ok(())
    }

    /// One live write; the sequence cycles through every kind of change.
    pub async fn step(&mut self) -> mongodb::error::Result<()> {
        let k = self.step;
        self.step += 1;
        let n = LIVE_BASE + k;
        let now = at(100_000 + i64::from(k));
        match k % 10 {
            0 => self.insert("users", user_doc(n, true)).await,
            1 => {
                let id = oid(T_USER, k % USERS);
                let set = doc! { "points": i64::from(k) * 3, "updatedAt": now };
                self.update("users", id, set).await
            }
            2 => {
                let status = if k % 4 == 2 { "processing" } else { "pending" };
                let mut d = payment_doc(n, status);
                if status == "pending" {
                    // Template checkouts only: pending entity payments are unique per offer.
                    d.insert("purchaseRequestId", format!("tpl-checkout-{n}"));
                    d.insert("sellerOfferId", format!("tpl-offer-{}", n % TEMPLATES));
                    d.insert("sellerId", format!("shop:{}", n % 7));
                }
                self.live_payments.push(n);
                self.insert("payments", d).await
            }
            3 => match self.live_payments.first().copied() {
                Some(p) => {
                    self.live_payments.remove(0);
                    self.complete_payment(p, n, now).await
                }
                None => Ok(()),
            },
            4 => {
                let mut d = ledger_doc(n);
                d.insert("paymentId", oid(T_PAYMENT, k % PAYMENTS));
                d.remove("purchaseRequestId");
                if k == 14 {
                    // A bad live document: shows a gap appearing while the demo runs.
                    d.insert("amount", dec_nan());
                }
                self.insert("fundsledgerentries", d).await
            }
            5 => {
                self.live_addresses.push(oid(T_ADDRESS, n));
                self.insert("addresses", address_doc(n, oid(T_USER, k % USERS), false))
                    .await
            }
            6 => match self.live_addresses.first().copied() {
                Some(a) if self.live_addresses.len() > 2 => {
                    self.live_addresses.remove(0);
                    self.delete("addresses", a).await
                }
                _ => Ok(()),
            },
            7 => {
                let r = k % REQUESTS;
                let offers: Vec<Bson> = (0..OFFERS)
                    .filter(|o| o % REQUESTS == r)
                    .map(|o| Bson::ObjectId(oid(T_OFFER, o)))
                    .collect();
                let mut set = doc! { "status": "in_progress", "updatedAt": now,
                "deliveryInfo": { "method": "pickup", "city": "Ankara", "country": "TR", "deadline": now } };
                if let Some(Bson::ObjectId(first)) = offers.first() {
                    set.insert("selectedOfferId", *first);
                }
                set.insert("offers", offers);
                self.update("purchaserequests", oid(T_REQUEST, r), set)
                    .await
            }
            8 => {
                self.insert("selleroffers", offer_doc(n, k % REQUESTS))
                    .await
            }
            _ => {
                let t = k % TEMPLATES;
                let set = doc! { "usageCount": i64::from(k / 10), "updatedAt": now };
                self.update("requesttemplates", oid(T_TEMPLATE, t), set)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_the_same_on_every_run() {
        assert_eq!(seed_documents(), seed_documents());
        let users = &seed_documents()[0].1;
        assert_eq!(users.len(), USERS as usize);
        assert_eq!(
            users[1].get_object_id("_id").map(|o| o.to_hex()).ok(),
            Some("650000000100000000000001".to_string())
        );
    }

    #[test]
    fn buyers_are_never_sellers_and_sellers_always_are() {
        for i in 0..200 {
            let b = buyer_of(i).bytes();
            let n = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
            assert!(!is_seller(n) && n < USERS, "buyer {n}");
            let s = seller_of(i).bytes();
            let m = u32::from_be_bytes([s[8], s[9], s[10], s[11]]);
            assert!(is_seller(m) && m < USERS, "seller {m}");
        }
    }

    #[test]
    fn three_bad_documents_are_seeded() {
        let bad = bad_documents();
        assert_eq!(
            bad.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            ["payments", "addresses", "categories"]
        );
    }
}
