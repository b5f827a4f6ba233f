import { html, type Html } from '../html.js'
import { countryName } from '../../common/countries.js'
import type { CountryCount, EventView, Page } from '../repositories.js'
import { countrySelect, field, formAlert, formatNumber, pagination, type FieldErrors, formNonce, FORM_SCRIPT, type FormState } from './components.js'
import { layout, type AssetUrls } from './layout.js'

const eventDate = new Intl.DateTimeFormat('en', { dateStyle: 'medium', timeZone: 'UTC' })
function day (iso: string): Html {
  const d = new Date(`${iso}T00:00:00Z`)
  return Number.isNaN(d.getTime()) ? html`${iso}` : html`<time datetime="${iso}">${eventDate.format(d)}</time>`
}

export function eventsPage (assets: AssetUrls, data: { countries: CountryCount[] }): Html {
  const totalEvents = data.countries.reduce((n, c) => n + c.events, 0)
  const totalPeople = data.countries.reduce((n, c) => n + c.participants, 0)
  return layout(assets, { title: 'Events', section: 'events', description: 'Hour of Code events by country.' }, html`
<div class="page-head page-head-split">
  <div>
    <h1>Events around the world</h1>
    <p class="lead">${formatNumber(totalEvents)} events in ${formatNumber(data.countries.length)} countries, expecting ${formatNumber(totalPeople)} participants.</p>
  </div>
  <p><a class="button" href="/events/new">Register your event</a></p>
</div>
<div class="table-wrap">
<table class="table">
  <caption class="visually-hidden">Events by country</caption>
  <thead><tr><th scope="col">Country</th><th scope="col" class="num">Events</th><th scope="col" class="num">Expected participants</th></tr></thead>
  <tbody>
    ${data.countries.map((c) => html`<tr><th scope="row"><a href="/events?country=${c.country}">${countryName(c.country)}</a></th><td class="num">${formatNumber(c.events)}</td><td class="num">${formatNumber(c.participants)}</td></tr>`)}
  </tbody>
</table>
</div>
`)
}

export function countryEventsPage (assets: AssetUrls, data: { country: string, page: number, pageSize: number, result: Page<EventView> }): Html {
  const name = countryName(data.country)
  const pages = Math.max(1, Math.ceil(data.result.total / data.pageSize))
  return layout(assets, { title: `Events in ${name}`, section: 'events' }, html`
<nav class="breadcrumbs" aria-label="Breadcrumb"><a href="/events">Events</a> / <span aria-current="page">${name}</span></nav>
<div class="page-head page-head-split">
  <div><h1>Events in ${name}</h1><p class="lead">${formatNumber(data.result.total)} registered, newest first.</p></div>
  <p><a class="button" href="/events/new">Register your event</a></p>
</div>
${data.result.items.length === 0 ? html`<p class="empty">No events registered here yet. Yours could be the first!</p>` : html`
<ul class="event-list">
  ${data.result.items.map((e) => html`<li class="event" id="event-${e.id}">
    <div class="event-date">${day(e.eventDate)}</div>
    <div class="event-main"><h3>${e.school}</h3><p>${e.city}, ${countryName(e.country)}</p></div>
    <div class="event-count"><strong>${formatNumber(e.expectedParticipants)}</strong> <span>expected</span></div>
  </li>`)}
</ul>`}
${pagination({ page: data.page, pages, href: (p) => `/events?country=${data.country}${p > 1 ? `&page=${p}` : ''}`, label: 'Event pages' })}
`)
}

export type EventForm = FormState

export function newEventPage (assets: AssetUrls, form: EventForm = { values: {} }): Html {
  return layout(assets, { title: 'Register your event', section: 'events', description: 'Register an Hour of Code event at your school, library or club.', scripts: [FORM_SCRIPT] }, html`
<div class="narrow">
<div class="page-head">
  <h1>Register your event</h1>
  <p class="lead">Hosting an Hour of Code at your school, library or club? Put it on the map and count your participants.</p>
</div>
<div class="panel">
${formAlert(form.message, form.errors, 'event')}
<form method="post" action="/events" class="form">
  ${formNonce(form.nonce)}
  <fieldset>
    <legend>About you</legend>
    ${field({ form: 'event', name: 'organizer', label: 'Organizer name', value: form.values.organizer, errors: form.errors, maxlength: 120, autocomplete: 'name' })}
    ${field({ form: 'event', name: 'email', label: 'Email', type: 'email', value: form.values.email, errors: form.errors, maxlength: 254, autocomplete: 'email', hint: 'Only used to contact you about your event; never shown.' })}
  </fieldset>
  <fieldset>
    <legend>Your event</legend>
    ${field({ form: 'event', name: 'school', label: 'School or organization', value: form.values.school, errors: form.errors, maxlength: 160, autocomplete: 'organization' })}
    ${countrySelect({ form: 'event', name: 'country', label: 'Country', value: form.values.country, errors: form.errors })}
    ${field({ form: 'event', name: 'city', label: 'City', value: form.values.city, errors: form.errors, maxlength: 100, autocomplete: 'address-level2' })}
    ${field({ form: 'event', name: 'expectedParticipants', label: 'Expected participants', type: 'number', value: form.values.expectedParticipants, errors: form.errors, min: 1, max: 100000 })}
    ${field({ form: 'event', name: 'eventDate', label: 'Date', type: 'date', value: form.values.eventDate, errors: form.errors })}
  </fieldset>
  <div class="form-actions"><button class="button" type="submit">Register event</button></div>
</form>
</div>
</div>
`)
}
