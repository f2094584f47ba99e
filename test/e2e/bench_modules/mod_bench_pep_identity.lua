-- Loaded only by test/e2e/bench_e2e.py (`make bench-e2e`), never by the
-- test suite. Prosody 0.12 announces PEP (XEP-0163) as an identity of each
-- account; libpurple looks for it in the disco#info of the server itself,
-- so it believes the server has no PEP and never publishes through it.
-- purple-lurch 0.7 publishes its device list and bundle that way, so
-- without this its contacts never learn its device and cannot write to
-- it. Announcing the identity on the host as well makes libpurple publish.
module:add_identity("pubsub", "pep", "Prosody");
