import t from 'tap'
import { escapeHtml, headerText, longDate, renderMessage, TemplateError } from '../../mailer/templates.js'

const links = { siteUrl: 'https://hoc.example' }
const event = { eventId: '42', organizer: 'Ada "Al" Lovelace', school: '<script>alert(1)</script> & Co', country: 'GB', city: 'London', expectedParticipants: 1200, eventDate: '2026-12-08' }

t.test('event confirmation: the event\'s school, city, date and expected participants in both parts', async (t) => {
  const m = renderMessage('event-confirmation', event, links)
  t.equal(m.subject, 'Your Hour of Code event at <script>alert(1)</script> & Co is registered', 'the subject is text, not HTML')
  t.match(m.text, 'School or organization: <script>alert(1)</script> & Co', 'the text part shows what was typed')
  t.match(m.text, 'Where: London, United Kingdom')
  t.match(m.text, 'Date: Tuesday, 8 December 2026')
  t.match(m.text, 'Expected participants: 1,200 participants')
  t.match(m.text, 'https://hoc.example/events?country=GB#event-42')
  t.match(m.html, '<td>&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co</td>', 'a school named <script> is escaped in the HTML part')
  t.notMatch(m.html, '<script>', 'no markup from a value survives')
  t.match(m.html, 'Hello Ada &quot;Al&quot; Lovelace,')
  t.match(m.html, '<title>Your Hour of Code event at &lt;script&gt;')
  t.match(m.html, 'href="https://hoc.example/events?country=GB#event-42"')
})

t.test('certificate: the link to the certificate page on the configured site', async (t) => {
  const m = renderMessage('certificate', { certificateId: 'abc_DEF-123', name: 'Zoë <b>', tutorialTitle: 'Dance Party & more', country: 'FR', tutorial: 'dance-party' }, links)
  t.equal(m.subject, 'Your Hour of Code certificate, Zoë <b>')
  t.match(m.text, 'https://hoc.example/certificates/abc_DEF-123')
  t.match(m.text, 'You completed "Dance Party & more"')
  t.match(m.html, 'href="https://hoc.example/certificates/abc_DEF-123"')
  t.match(m.html, 'Congratulations, Zoë &lt;b&gt;!')
  t.match(m.html, 'Dance Party &amp; more')
  const odd = renderMessage('certificate', { certificateId: 'a/../b?c', name: 'N', tutorialTitle: 'T' }, links)
  t.match(odd.text, 'https://hoc.example/certificates/a%2F..%2Fb%3Fc', 'an id never leaves the certificate path')
})

t.test('the subject is one header line whatever the values hold (no header injection)', async (t) => {
  const m = renderMessage('event-confirmation', { ...event, school: 'School\r\nBcc: victim@example.org\r\n\r\nbody' }, links)
  t.notMatch(m.subject, /[\r\n]/)
  t.equal(m.subject, 'Your Hour of Code event at School Bcc: victim@example.org body is registered')
  t.equal(headerText('a\u0085b\u2028c\td'), 'a b c d', 'C1 controls, line separators and tabs too')
  t.equal(headerText('x'.repeat(500)).length, 200, 'and bounded')
})

t.test('helpers', async (t) => {
  t.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;')
  t.equal(longDate('2027-01-01'), 'Friday, 1 January 2027')
  t.equal(longDate('nonsense'), 'nonsense')
})

t.test('a payload that cannot make a message is a TemplateError (a permanent failure)', async (t) => {
  t.throws(() => renderMessage('newsletter', event, links), TemplateError)
  t.throws(() => renderMessage('toString', event, links), TemplateError)
  t.throws(() => renderMessage('event-confirmation', { ...event, school: undefined }, links), TemplateError)
  t.throws(() => renderMessage('certificate', null, links), TemplateError)
})
