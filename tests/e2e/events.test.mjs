// Change detection and GET /v1/events: protocol_update, tvl_change, price_change, no event for
// unchanged or stale values, offsets and paging.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, ingest } from './lib/rtad.mjs';
import { approx, assertError, ISO_RE, UUIDV7_RE } from './lib/check.mjs';

const nowS = () => Math.floor(Date.now() / 1000);

function checkEventShape(e) {
    const s = JSON.stringify(e);
    assert.match(e.eventId, UUIDV7_RE, `eventId: ${s}`);
    assert.ok(['tvl_change', 'price_change', 'protocol_update'].includes(e.eventType), s);
    assert.equal(typeof e.protocol, 'string', s);
    assert.ok(e.data && typeof e.data === 'object', s);
    assert.ok('previousValue' in e.data && 'currentValue' in e.data && 'changePercent' in e.data,
        s);
    assert.match(e.data.timestamp, ISO_RE, s);
    assert.ok(e.metadata && typeof e.metadata === 'object', s);
    assert.equal(e.metadata.source, 'ingest', s);
    assert.equal(typeof e.metadata.confidence, 'number', s);
    assert.ok(e.metadata.confidence >= 0 && e.metadata.confidence <= 1, s);
    assert.ok(Array.isArray(e.metadata.tags), s);
    assert.match(e.createdAt, ISO_RE, s);
    assert.ok(Number.isInteger(e.offset) && e.offset >= 1, s);
}

describe('change events', () => {
    let rtad;
    const t0 = nowS() - 3600;
    before(async () => { rtad = await startRtad(); });
    after(async () => { await rtad?.stop(); });

    async function eventsAfter(after, limit) {
        const q = `/v1/events?after=${after}${limit ? `&limit=${limit}` : ''}`;
        const r = await rtad.api('GET', q, { key: rtad.adminKey });
        assert.equal(r.status, 200, r.text);
        assert.ok(Array.isArray(r.json.data), r.text);
        assert.ok(r.json.meta && typeof r.json.meta.complete === 'boolean', r.text);
        for (const e of r.json.data) checkEventShape(e);
        return r.json;
    }
    async function ingestOk(body) {
        const r = await ingest(rtad, body);
        assert.equal(r.status, 200, r.text);
        return r.json;
    }

    let last = 0; // highest offset seen so far

    it('starts empty', async () => {
        const j = await eventsAfter(0);
        assert.deepEqual(j.data, []);
        assert.equal(j.meta.complete, true);
    });

    it('the first TVL of a new protocol gives protocol_update and no tvl_change', async () => {
        const res = await ingestOk({ tvl: [{ protocol: 'ev-proto', chain: 'ethereum', tvl: 100,
            timestamp: t0, name: 'Event Proto', category: 'Lending' }] });
        assert.ok(res.events >= 1, JSON.stringify(res));
        const j = await eventsAfter(last);
        assert.equal(j.data.length, res.events);
        const types = j.data.map((e) => e.eventType);
        assert.ok(types.includes('protocol_update'), `types: ${types}`);
        assert.ok(!types.includes('tvl_change'),
            `unexpected tvl_change: ${JSON.stringify(j.data)}`);
        const pu = j.data.find((e) => e.eventType === 'protocol_update');
        assert.equal(pu.protocol, 'ev-proto');
        assert.equal(pu.offset, res.firstOffset);
        last = Math.max(...j.data.map((e) => e.offset));
        assert.equal(last, res.lastOffset);
    });

    it('a different value gives tvl_change with changePercent as a fraction', async () => {
        const res = await ingestOk({ tvl: [{ protocol: 'ev-proto', chain: 'ethereum', tvl: 110,
            timestamp: t0 + 60 }] });
        assert.equal(res.events, 1, JSON.stringify(res));
        assert.equal(res.changed, 1);
        const j = await eventsAfter(last);
        assert.equal(j.data.length, 1, JSON.stringify(j.data));
        const e = j.data[0];
        assert.equal(e.eventType, 'tvl_change');
        assert.equal(e.protocol, 'ev-proto');
        assert.equal(e.chain, 'ethereum');
        assert.equal(e.data.previousValue, 100);
        assert.equal(e.data.currentValue, 110);
        approx(e.data.changePercent, 0.1, 1e-9, `changePercent ${e.data.changePercent}`);
        assert.equal(Date.parse(e.data.timestamp), (t0 + 60) * 1000);
        assert.equal(e.offset, last + 1);
        assert.ok(Math.abs(Date.parse(e.createdAt) - Date.now()) < 60000, e.createdAt);
        last = e.offset;
    });

    it('a decrease gives a negative changePercent', async () => {
        const res = await ingestOk({ tvl: [{ protocol: 'ev-proto', chain: 'ethereum', tvl: 88,
            timestamp: t0 + 120 }] });
        assert.equal(res.events, 1);
        const [e] = (await eventsAfter(last)).data;
        assert.equal(e.eventType, 'tvl_change');
        assert.equal(e.data.previousValue, 110);
        assert.equal(e.data.currentValue, 88);
        approx(e.data.changePercent, -0.2, 1e-9);
        last = e.offset;
    });

    it('the same value again gives no event', async () => {
        const res = await ingestOk({ tvl: [{ protocol: 'ev-proto', chain: 'ethereum', tvl: 88,
            timestamp: t0 + 180 }] });
        assert.equal(res.events, 0);
        assert.equal(res.unchanged, 1);
        assert.deepEqual((await eventsAfter(last)).data, []);
    });

    it('an older timestamp is stale: no event, value kept', async () => {
        const res = await ingestOk({ tvl: [{ protocol: 'ev-proto', chain: 'ethereum', tvl: 5000,
            timestamp: t0 - 600 }] });
        assert.equal(res.stale, 1);
        assert.equal(res.events, 0);
        assert.deepEqual((await eventsAfter(last)).data, []);
        const p = await rtad.api('GET', '/v1/protocols/ev-proto', { key: rtad.adminKey });
        assert.equal(p.json.chains.find((c) => c.chain === 'ethereum').tvl, 88);
    });

    it('prices: the first gives no event, a second different one gives price_change', async () => {
        const a = await ingestOk({ prices: [{ token: 'coingecko:ev-token', price: 2,
            timestamp: t0, confidence: 0.8 }] });
        assert.equal(a.events, 0, JSON.stringify(a));
        assert.deepEqual((await eventsAfter(last)).data, []);
        const b = await ingestOk({ prices: [{ token: 'coingecko:ev-token', price: 2.5,
            timestamp: t0 + 60, confidence: 0.8 }] });
        assert.equal(b.events, 1, JSON.stringify(b));
        const [e] = (await eventsAfter(last)).data;
        assert.equal(e.eventType, 'price_change');
        assert.equal(e.token, 'coingecko:ev-token');
        assert.equal(e.data.previousValue, 2);
        assert.equal(e.data.currentValue, 2.5);
        approx(e.data.changePercent, 0.25);
        approx(e.metadata.confidence, 0.8);
        last = e.offset;
    });

    it('one batch with several changes gives consecutive offsets in batch order', async () => {
        const res = await ingestOk({ tvl: [
            { protocol: 'ev-proto', chain: 'ethereum', tvl: 100, timestamp: t0 + 240 },
            { protocol: 'ev-proto', chain: 'ethereum', tvl: 120, timestamp: t0 + 300 },
        ], prices: [{ token: 'coingecko:ev-token', price: 3, timestamp: t0 + 120 }] });
        assert.equal(res.events, 3, JSON.stringify(res));
        assert.equal(res.firstOffset, last + 1);
        assert.equal(res.lastOffset, last + 3);
        const j = await eventsAfter(last);
        assert.deepEqual(j.data.map((e) => e.offset), [last + 1, last + 2, last + 3]);
        const tvl = j.data.filter((e) => e.eventType === 'tvl_change');
        assert.deepEqual(tvl.map((e) => [e.data.previousValue, e.data.currentValue]),
            [[88, 100], [100, 120]]);
        last += 3;
    });

    it('event ids are unique UUIDv7s; paging with after and limit', async () => {
        const all = (await eventsAfter(0)).data;
        assert.equal(all.length, last, 'every event since start is in the log');
        assert.deepEqual(all.map((e) => e.offset), all.map((_, i) => i + 1));
        assert.equal(new Set(all.map((e) => e.eventId)).size, all.length);
        const page = await eventsAfter(2, 2);
        assert.deepEqual(page.data.map((e) => e.offset), [3, 4]);
        assert.deepEqual(page.data.map((e) => e.eventId), [all[2].eventId, all[3].eventId]);
        const tail = await eventsAfter(last);
        assert.deepEqual(tail.data, []);
        assert.equal(tail.meta.complete, true);
    });

    it('bad after / limit -> 400', async () => {
        for (const q of ['after=abc', 'after=-1', 'limit=0', 'limit=abc']) {
            const r = await rtad.api('GET', `/v1/events?${q}`, { key: rtad.adminKey });
            assert.equal(r.status, 400, `${q}: ${r.status} ${r.text}`);
        }
    });

    it('needs a key', async () => {
        assertError(await rtad.api('GET', '/v1/events?after=0'), 401, 'missing_api_key');
    });
});
