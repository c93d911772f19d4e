// Email (a real SMTP server: smtp-server, messages parsed with mailparser) and push (a local
// stand-in speaking FCM HTTP v1) as their receivers and the tracking API see them: headers and
// template text, a 451 retried with the same Message-ID, a 550 dead at once and replayed after
// the server is fixed, FCM UNREGISTERED disabling the token, 503/429 retried; user
// preferences: quiet hours delaying email and push (not webhooks), a channel turned off
// suppressing its deliveries, and validation of the preferences document.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, api } from './lib/rtad.mjs';
import { assertError, assertValidation } from './lib/check.mjs';
import { metric } from './lib/rt.mjs';
import {
    alertEnv, startWebhookReceiver, startSmtpReceiver, createRule, tvl, price, getDelivery,
    waitDelivery, waitRuleDeliveries, mailHeader, assertSignedWebhook, settle, isStatus,
    ISO_MS, UUIDV7, utcHHMM,
    stopClean,
} from './lib/alerts.mjs';
import { startFcmStandin } from './lib/fcm-standin.mjs';

let seq = 0;
/** A gt-100 rule on a fresh pair with the given actions; fire() makes it fire once more. */
async function rule(h, key, actions, extra = {}) {
    const protocol = `ep-${++seq}`;
    const r = await createRule(h, key, {
        name: `Rule ${seq}`, throttleMinutes: 0, ...extra,
        conditions: [{ metric: 'tvl', protocol, chain: 'ethereum', operator: 'gt',
            threshold: 100 }],
        actions,
    });
    await tvl(h, protocol, 'ethereum', 10);
    let v = 200;
    return {
        rule: r, protocol,
        async fire() {
            await tvl(h, protocol, 'ethereum', 50);
            return tvl(h, protocol, 'ethereum', v++);
        },
    };
}

describe('email and push deliveries, preferences', () => {
    let rtad;
    let smtp;
    let fcm;
    let hooks;
    let key;
    before(async () => {
        smtp = await startSmtpReceiver();
        fcm = await startFcmStandin({ project: 'test', token: 'tok' });
        hooks = await startWebhookReceiver({ host: '127.0.0.2' });
        rtad = await startRtad({ env: alertEnv({
            RTA_SMTP_URL: smtp.url,
            RTA_SMTP_FROM: 'rta alerts <alerts@rta.example>',
            RTA_ALERTS_PUBLIC_URL: 'https://rta.example',
            RTA_PUSH_FCM_BASE_URL: fcm.url,
            RTA_PUSH_FCM_PROJECT: 'test',
            RTA_PUSH_FCM_TOKEN: 'tok',
        }) });
        key = (await makeKey(rtad, { user: 'mail-user', tier: 'pro' })).key;
    });
    after(async () => {
        try {
            await stopClean(rtad);
        } finally {
            await smtp?.close();
            await fcm?.close();
            await hooks?.close();
        }
    });

    it('email: a 451 to the first DATA is retried; both tries carry the same Message-ID; ' +
        'headers and the template text as documented', async () => {
        const to = 'retry451@example.com';
        let tries = 0;
        smtp.answer = (m) => (m.to.includes(to) && tries++ === 0 ? 451 : 250);
        const { rule: r, fire } = await rule(rtad, key,
            [{ type: 'email', target: to, template: 'tvl_change' }], { name: 'TVL watch' });
        const ev = await fire();
        const msgs = await smtp.waitMessages(to, 2);
        assert.deepEqual(msgs.map((m) => m.accepted), [false, true]);
        assert.equal(msgs[0].code, 451);
        const [d0] = await waitRuleDeliveries(rtad, key, r.ruleId, 1);
        for (const m of msgs) {
            assert.equal(m.mail.messageId, `<${d0.id}@rta>`, m.raw);
            assert.equal(m.from, 'alerts@rta.example', 'envelope sender');
            assert.deepEqual(m.to, [to], 'envelope recipient');
        }
        const m = msgs[1].mail;
        assert.equal(m.from.text, '"rta alerts" <alerts@rta.example>', msgs[1].raw);
        assert.equal(m.to.value[0].address, to);
        assert.equal(m.subject, `[rta] TVL watch: ep-${seq} TVL alert firing`);
        assert.ok(m.date instanceof Date && !Number.isNaN(m.date.getTime()), msgs[1].raw);
        assert.ok(Math.abs(m.date - Date.now()) < 120000, `Date: ${m.date}`);
        assert.equal(mailHeader(m, 'auto-submitted'), 'auto-generated');
        assert.equal(mailHeader(m, 'list-unsubscribe'),
            '<https://rta.example/v1/users/me/preferences>');
        assert.match(mailHeader(m, 'content-type'), /^text\/plain; charset=utf-8/i);
        const evs = await api(rtad, 'GET', `/v1/events?after=${ev.firstOffset - 1}&limit=1`,
            { key: rtad.adminKey });
        const eventId = evs.json.data[0].eventId;
        assert.equal(m.text.replace(/\s+$/, ''), [
            'Your alert rule "TVL watch" is firing.',
            '',
            `Protocol: ep-${seq}`,
            'Chain: ethereum',
            'Metric: tvl',
            'Value: 200 (previous 50, change +300.00%)',
            'Threshold: 100',
            `Time: ${m.text.match(/^Time: (.*)$/m)?.[1]}`,
            `Event: ${eventId}`,
        ].join('\n'), m.text);
        assert.match(m.text.match(/^Time: (.*)$/m)[1], ISO_MS);

        const d = await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered');
        assert.equal(d.channel, 'email');
        assert.equal(d.attempts, 2);
        assert.deepEqual(d.attemptLog.map((a) => [a.statusCode, a.outcome]),
            [[451, 'retry'], [250, 'success']]);
    });

    it('email: the default template when the action names none for a non-TVL event is ' +
        'the price one; `default` renders its own subject', async () => {
        const to = 'templates@example.com';
        smtp.answer = () => 250;
        await createRule(rtad, key, {
            name: 'Price watch', throttleMinutes: 0,
            conditions: [{ metric: 'price', token: 'coingecko:mail-coin', operator: 'gt',
                threshold: 10 }],
            actions: [{ type: 'email', target: to },
                { type: 'email', target: to, template: 'default' }],
        });
        await price(rtad, 'coingecko:mail-coin', 5);
        await price(rtad, 'coingecko:mail-coin', 6);
        await price(rtad, 'coingecko:mail-coin', 12);
        const msgs = await smtp.waitMessages(to, 2);
        const subjects = msgs.map((x) => x.mail.subject).sort();
        assert.deepEqual(subjects, ['[rta] Price watch firing',
            '[rta] Price watch: coingecko:mail-coin price alert firing']);
        const priceMail = msgs.find((x) => x.mail.subject.includes('price alert')).mail;
        assert.match(priceMail.text, /^Token: coingecko:mail-coin$/m);
        assert.match(priceMail.text, /^Value: 12 \(previous 6, change \+100\.00%\)$/m);
    });

    it('email: 550 is permanent (dead after one attempt); after the server is fixed the ' +
        'replay is delivered with the same Message-ID; a second replay is 409', async () => {
        const to = 'bounce@example.com';
        smtp.answer = (m) => (m.to.includes(to) ? 550 : 250);
        const dead0 = await metric(rtad, 'rta_alert_dead_letters_total');
        const { rule: r, fire } = await rule(rtad, key, [{ type: 'email', target: to }]);
        await fire();
        const [d0] = await waitRuleDeliveries(rtad, key, r.ruleId, 1);
        const dead = await waitDelivery(rtad, key, d0.id, isStatus('dead'), 'dead');
        assert.equal(dead.attempts, 1);
        assert.equal(dead.lastStatusCode, 550);
        assert.deepEqual(dead.attemptLog.map((a) => [a.statusCode, a.outcome]), [[550, 'dead']]);
        await settle(1500);
        assert.equal(smtp.messagesTo(to).length, 1, 'a 550 was retried');
        assert.equal(await metric(rtad, 'rta_alert_dead_letters_total'), dead0 + 1);
        const listed = await api(rtad, 'GET', `/v1/alerts/deliveries?status=dead&channel=email`,
            { key });
        assert.ok(listed.json.data.some((x) => x.id === d0.id), listed.text);

        smtp.answer = () => 250;
        const rr = await api(rtad, 'POST', `/v1/alerts/deliveries/${d0.id}/retry`, { key });
        assert.equal(rr.status, 202, rr.text);
        assert.equal(rr.json.id, d0.id);
        const d = await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered');
        assert.deepEqual(d.attemptLog.map((a) => a.outcome), ['dead', 'success']);
        const msgs = await smtp.waitMessages(to, 2);
        assert.equal(msgs[1].accepted, true);
        assert.equal(msgs[1].mail.messageId, msgs[0].mail.messageId);
        assert.equal(msgs[1].mail.messageId, `<${d0.id}@rta>`);
        assertError(await api(rtad, 'POST', `/v1/alerts/deliveries/${d0.id}/retry`, { key }),
            409, 'delivery_not_dead');
    });

    it('push: FCM HTTP v1 request with the bearer token, notification from the template, ' +
        'data.delivery_id', async () => {
        const { rule: r, fire } = await rule(rtad, key, [{ type: 'push', target: 'device-ok',
            template: 'tvl_change' }], { name: 'Push watch' });
        await fire();
        const [req] = await fcm.inbox.waitCount((x) => x.json?.message?.token === 'device-ok', 1);
        const [d0] = await waitRuleDeliveries(rtad, key, r.ruleId, 1);
        assert.equal(req.path, '/v1/projects/test/messages:send');
        assert.equal(req.auth, 'Bearer tok');
        assert.match(req.contentType, /^application\/json/);
        const msg = req.json.message;
        assert.equal(msg.notification.title, `[rta] Push watch: ep-${seq} TVL alert firing`);
        assert.match(msg.notification.body, /^Your alert rule "Push watch" is firing\./);
        assert.deepEqual(msg.data, { delivery_id: d0.id });
        const d = await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered');
        assert.equal(d.lastStatusCode, 200);
        assert.equal(d.channel, 'push');
    });

    it('push: an UNREGISTERED token disables the target; the next trigger is `disabled` ' +
        'without a request', async () => {
        fcm.unregister('device-gone');
        const { rule: r, fire } = await rule(rtad, key, [{ type: 'push', target: 'device-gone' }]);
        await fire();
        const [d0] = await waitRuleDeliveries(rtad, key, r.ruleId, 1);
        const d = await waitDelivery(rtad, key, d0.id, isStatus('disabled'), 'disabled');
        assert.equal(d.attempts, 1);
        assert.equal(d.lastStatusCode, 404);
        assert.match(d.lastError ?? '', /UNREGISTERED/, JSON.stringify(d));
        await fire();
        const two = await waitRuleDeliveries(rtad, key, r.ruleId, 2);
        const next = two.find((x) => x.id !== d0.id);
        assert.equal(next.status, 'disabled', JSON.stringify(next));
        assert.equal(next.attempts, 0);
        await settle(500);
        assert.equal(fcm.inbox.filter((x) => x.json?.message?.token === 'device-gone').length, 1);
    });

    it('push: 503 and 429 (Retry-After: 2) are retried', async () => {
        const { rule: r, fire } = await rule(rtad, key, [{ type: 'push', target: 'device-busy' }]);
        fcm.failNext([{ status: 503 }, { status: 429, retryAfter: 2 }]);
        await fire();
        const reqs = await fcm.inbox.waitCount((x) => x.json?.message?.token === 'device-busy',
            3);
        assert.deepEqual(reqs.map((x) => x.status), [503, 429, 200]);
        assert.ok(reqs[2].at - reqs[1].at >= 1900, `Retry-After ignored: ${
            reqs[2].at - reqs[1].at} ms`);
        const [d0] = await waitRuleDeliveries(rtad, key, r.ruleId, 1);
        const d = await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered');
        assert.deepEqual(d.attemptLog.map((a) => [a.statusCode, a.outcome]),
            [[503, 'retry'], [429, 'retry'], [200, 'success']]);
        assert.equal(new Set(reqs.map((x) => x.json.message.data.delivery_id)).size, 1);
    });

    it('preferences: GET defaults, PUT validation errors, PUT echoes, audit', async () => {
        const k = (await makeKey(rtad, { user: 'prefs-user', tier: 'pro' })).key;
        const g = await api(rtad, 'GET', '/v1/users/me/preferences', { key: k });
        assert.equal(g.status, 200, g.text);
        assert.equal(g.json.userId, 'prefs-user');
        assert.deepEqual(g.json.channels, { email: true, webhook: true, push: true });
        for (const [body, path, rl] of [
            [{ quietHours: { start: '22:00', end: '07:00', timezone: 'Mars/Olympus' } },
                '$.quietHours.timezone', 'timezone'],
            [{ quietHours: { start: '25:00', end: '07:00' } }, '$.quietHours.start', 'time'],
            [{ quietHours: { start: '22:00' } }, '$.quietHours.end', 'required'],
            [{ channels: { sms: true } }, '$.channels.sms', 'unknown_field'],
            [{ channels: { email: 'yes' } }, '$.channels.email', 'type'],
            [{ colour: 'red' }, '$.colour', 'unknown_field'],
        ]) {
            assertValidation(await api(rtad, 'PUT', '/v1/users/me/preferences',
                { key: k, body }), path, rl);
        }
        const body = { channels: { email: true, webhook: true, push: false },
            defaults: { email: 'me@example.com' },
            quietHours: { start: '22:00', end: '07:00', timezone: 'Europe/Paris',
                enabled: true } };
        const p = await api(rtad, 'PUT', '/v1/users/me/preferences', { key: k, body });
        assert.equal(p.status, 200, p.text);
        assert.deepEqual({ ...p.json, userId: undefined }, { ...body, userId: undefined });
        const g2 = await api(rtad, 'GET', '/v1/users/me/preferences', { key: k });
        assert.deepEqual(g2.json, p.json);
        const audit = await api(rtad, 'GET', '/v1/admin/audit?action=preferences.update',
            { key: rtad.adminKey });
        assert.ok(audit.json.data.some((e) => e.target === 'prefs-user'), audit.text);
    });

    it('quiet hours covering now: email and push are pending "delayed by quiet hours until' +
        ' <end>", the webhook is delivered at once', async () => {
        const k = (await makeKey(rtad, { user: 'quiet-user', tier: 'pro' })).key;
        const start = utcHHMM(-60);
        const end = utcHHMM(60);
        const p = await api(rtad, 'PUT', '/v1/users/me/preferences', { key: k, body: {
            quietHours: { start, end, timezone: 'UTC', enabled: true } } });
        assert.equal(p.status, 200, p.text);
        const { rule: r, fire } = await rule(rtad, k, [
            { type: 'email', target: 'quiet@example.com' },
            { type: 'webhook', target: hooks.url('/quiet') },
            { type: 'push', target: 'device-quiet' },
        ]);
        const secret = r.actions[1].secret;
        await fire();
        const dels = await waitRuleDeliveries(rtad, k, r.ruleId, 3);
        const byChannel = Object.fromEntries(dels.map((d) => [d.channel, d]));
        const [req] = await hooks.waitRequests('/quiet', 1);
        assertSignedWebhook(req, secret);
        await waitDelivery(rtad, k, byChannel.webhook.id, isStatus('delivered'), 'webhook');

        // the end of the quiet period: today's (or tomorrow's) `end` in UTC
        const endAt = new Date();
        endAt.setUTCHours(Number(end.slice(0, 2)), Number(end.slice(3)), 0, 0);
        if (endAt <= Date.now()) endAt.setUTCDate(endAt.getUTCDate() + 1);
        for (const ch of ['email', 'push']) {
            const d = await getDelivery(rtad, k, byChannel[ch].id);
            assert.equal(d.status, 'pending', JSON.stringify(d));
            assert.equal(d.attempts, 0, JSON.stringify(d));
            const m = /^delayed by quiet hours until (\S+)$/.exec(d.note ?? '');
            assert.ok(m, `note: ${JSON.stringify(d)}`);
            const until = Date.parse(m[1]);
            assert.ok(Math.abs(until - endAt.getTime()) <= 60000,
                `until ${m[1]}, expected about ${endAt.toISOString()}`);
            assert.equal(Date.parse(d.nextAttemptAt), until, JSON.stringify(d));
        }
        await settle(1500);
        assert.equal(smtp.messagesTo('quiet@example.com').length, 0, 'email sent in quiet hours');
        assert.equal(fcm.inbox.filter((x) => x.json?.message?.token === 'device-quiet').length,
            0, 'push sent in quiet hours');
    });

    it('a channel turned off: its deliveries are `suppressed` with a note, the others go ' +
        'out', async () => {
        const k = (await makeKey(rtad, { user: 'off-user', tier: 'pro' })).key;
        const p = await api(rtad, 'PUT', '/v1/users/me/preferences', { key: k, body: {
            channels: { email: false } } });
        assert.equal(p.status, 200, p.text);
        assert.deepEqual(p.json.channels, { email: false, webhook: true, push: true });
        const s0 = await metric(rtad, 'rta_alert_notifications_total',
            { channel: 'email', status: 'suppressed' });
        const { rule: r, fire } = await rule(rtad, k, [
            { type: 'email', target: 'off@example.com' },
            { type: 'webhook', target: hooks.url('/on') },
        ]);
        await fire();
        const dels = await waitRuleDeliveries(rtad, k, r.ruleId, 2);
        const email = dels.find((d) => d.channel === 'email');
        assert.equal(email.status, 'suppressed', JSON.stringify(email));
        assert.equal(email.attempts, 0);
        assert.equal(email.note, 'email notifications are off in the user\'s preferences');
        const web = dels.find((d) => d.channel === 'webhook');
        await waitDelivery(rtad, k, web.id, isStatus('delivered'), 'webhook delivered');
        await settle(800);
        assert.equal(smtp.messagesTo('off@example.com').length, 0);
        assert.equal(await metric(rtad, 'rta_alert_notifications_total',
            { channel: 'email', status: 'suppressed' }), s0 + 1);
        const sup = await api(rtad, 'GET', '/v1/alerts/deliveries?status=suppressed', { key: k });
        assert.deepEqual(sup.json.data.map((d) => d.id), [email.id]);
        assert.match(email.id, UUIDV7);
    });
});

describe('email and push without configuration', () => {
    let rtad;
    let key;
    before(async () => {
        rtad = await startRtad({ env: alertEnv() });
        key = (await makeKey(rtad, { user: 'nocfg-user', tier: 'pro' })).key;
    });
    after(async () => {
        await stopClean(rtad);
    });

    it('deliveries end `dead` with "email not configured" / "push not configured"',
        async () => {
            const { rule: r, fire } = await rule(rtad, key, [
                { type: 'email', target: 'nobody@example.com' },
                { type: 'push', target: 'device-x' },
            ]);
            await fire();
            const dels = await waitRuleDeliveries(rtad, key, r.ruleId, 2,
                { pred: isStatus('dead') });
            const byChannel = Object.fromEntries(dels.map((d) => [d.channel, d]));
            assert.match(byChannel.email.lastError ?? '', /email not configured/);
            assert.match(byChannel.push.lastError ?? '', /push not configured/);
        });
});

