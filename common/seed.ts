/**
 * Deterministic, realistic content for demos and load tests: the same seed
 * gives the same site every time, so load-test results compare across runs.
 * Rows go in as multi-row inserts in one transaction (fast on PGlite too).
 */
import { sql, type Kysely } from 'kysely'
import type { Database } from './db-types.js'
import { mulberry32 } from './random.js'

export interface SeedSizes {
  tutorials: number
  news: number
  comments: number
  events: number
  completions: number
}

export const DEFAULT_SIZES: SeedSizes = { tutorials: 240, news: 2000, comments: 20_000, events: 3000, completions: 5000 }

/** The content generator: the same seed gives the same site. */
export const prng = mulberry32

const SUBJECTS = ['Dance Party', 'Minecraft Adventurer', 'Star Wars: Building a Galaxy', 'Frozen Skating', 'Flappy Game', 'Artist Turtle', 'AI for Oceans', 'Music Lab', 'Poem Art', 'Sports Game', 'Escape the Maze', 'Robot Rescue', 'Pixel Painter', 'Story Maker', 'Space Explorer', 'Weather Station', 'Garden Sensor', 'Chatbot Basics', 'Data Detective', 'Sorting Algorithms', 'Web Page Builder', 'Animation Studio', 'Code Breaker', 'Math Art', 'Virtual Pet', 'Treasure Hunt', 'Traffic Lights', 'Solar System', 'Bird Migration', 'Recycling Robot']
const FLAVOURS = ['for Beginners', 'Remix', 'Challenge', 'in Python', 'with Blocks', 'in JavaScript', 'Unplugged', 'Deep Dive']
const PARTNERS = ['Code.org', 'Khan Academy', 'Tynker', 'CodeCombat', 'Scratch Foundation', 'Grasshopper', 'Kodable', 'Microsoft MakeCode', 'Apple Swift Playgrounds', 'Codesters']
const LEVELS = ['beginner', 'intermediate', 'advanced'] as const
const AGES: Array<[number, number]> = [[4, 7], [6, 10], [8, 12], [10, 14], [13, 18], [14, 99]]
const MINUTES = [15, 30, 45, 60, 90]
const FIRST = ['Ada', 'Grace', 'Alan', 'Katherine', 'Linus', 'Margaret', 'Tim', 'Radia', 'Hedy', 'Dennis', 'Barbara', 'Ken', 'Frances', 'Guido', 'Anita', 'Yukihiro', 'Fatima', 'Kwame', 'Priya', 'Mateo', 'Sofia', 'Liam', 'Aiko', 'Olu', 'Chen', 'Amara', 'Noah', 'Zara', 'Ivan', 'Leila']
const LAST = ['Lovelace', 'Hopper', 'Turing', 'Johnson', 'Torvalds', 'Hamilton', 'Berners-Lee', 'Perlman', 'Lamarr', 'Ritchie', 'Liskov', 'Thompson', 'Allen', 'van Rossum', 'Borg', 'Matsumoto', 'Okafor', 'Mensah', 'Sharma', 'García', 'Rossi', 'Nguyen', 'Tanaka', 'Adeyemi', 'Wang', 'Diallo', 'Müller', 'Khan', 'Petrov', 'Haddad']
/** [topic, plural?]: the verb agrees with it. */
const NEWS_TOPICS: Array<[string, boolean]> = [['Hour of Code', false], ['Computer Science Education Week', false], ['teacher workshops', true], ['girls in computing', true], ['AI in the classroom', false], ['rural schools', true], ['new tutorials', true], ['student hackathons', true], ['coding clubs', true], ['accessibility in CS', false], ['parent nights', true], ['district partnerships', true]]
/** [singular, plural] */
const NEWS_VERBS: Array<[string, string]> = [['breaks records in', 'break records in'], ['comes to', 'come to'], ['expands in', 'expand in'], ['takes off in', 'take off in'], ['launches in', 'launch in'], ['reaches students in', 'reach students in'], ['inspires classrooms in', 'inspire classrooms in'], ['returns to', 'return to']]
const PLACES = ['Nairobi', 'São Paulo', 'Chicago', 'Jakarta', 'Warsaw', 'Manila', 'Lagos', 'Toronto', 'Seoul', 'Bogotá', 'Madrid', 'Hanoi', 'Cairo', 'Lima', 'Sydney', 'Mumbai', 'Accra', 'Berlin', 'Mexico City', 'Tokyo']
const COMMENT_BITS = ['My class loved this!', 'We did this with 30 fourth graders and nobody wanted to stop.', 'Great resource, thank you.', 'Is there a version for older students?', 'The dance party one is a hit every year.', 'Our school is joining again this December.', 'Shared with all the teachers in our district.', 'My daughter finished it twice.', 'Could you add more unplugged activities?', 'Worked great on our old Chromebooks.', 'First time teaching CS and this made it easy.', 'The certificates were a big motivator.']

/** Countries weighted roughly like Hour of Code participation; ISO 3166-1 alpha-2. */
export const SEED_COUNTRIES: Array<[string, string[]]> = [
  ['US', ['Seattle', 'Chicago', 'Austin', 'Boston', 'Denver', 'Atlanta']], ['IN', ['Mumbai', 'Bengaluru', 'Delhi', 'Pune']],
  ['GB', ['London', 'Leeds', 'Bristol']], ['BR', ['São Paulo', 'Recife', 'Curitiba']], ['NG', ['Lagos', 'Abuja', 'Ibadan']],
  ['CA', ['Toronto', 'Vancouver', 'Montréal']], ['MX', ['Mexico City', 'Guadalajara']], ['DE', ['Berlin', 'Munich', 'Hamburg']],
  ['FR', ['Paris', 'Lyon']], ['ES', ['Madrid', 'Barcelona']], ['IT', ['Rome', 'Milan']], ['PL', ['Warsaw', 'Kraków']],
  ['KE', ['Nairobi', 'Mombasa']], ['GH', ['Accra', 'Kumasi']], ['ZA', ['Cape Town', 'Johannesburg']], ['EG', ['Cairo']],
  ['JP', ['Tokyo', 'Osaka']], ['KR', ['Seoul', 'Busan']], ['CN', ['Shanghai', 'Shenzhen']], ['ID', ['Jakarta', 'Bandung']],
  ['PH', ['Manila', 'Cebu']], ['VN', ['Hanoi', 'Ho Chi Minh City']], ['AU', ['Sydney', 'Melbourne']], ['NZ', ['Auckland']],
  ['AR', ['Buenos Aires']], ['CO', ['Bogotá', 'Medellín']], ['PE', ['Lima']], ['CL', ['Santiago']], ['TR', ['Istanbul', 'Ankara']],
  ['UA', ['Kyiv', 'Lviv']], ['RO', ['Bucharest']], ['NL', ['Amsterdam']], ['SE', ['Stockholm']], ['PT', ['Lisbon']],
  ['PK', ['Karachi', 'Lahore']], ['BD', ['Dhaka']], ['TH', ['Bangkok']], ['MY', ['Kuala Lumpur']], ['SG', ['Singapore']], ['AE', ['Dubai']]
]

function pick<T> (rand: () => number, items: readonly T[]): T { return items[Math.floor(rand() * items.length)] }

/** Words of a URL slug. */
export function slugify (text: string): string {
  return text.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 80)
}

function paragraphs (rand: () => number, topic: string, n: number): string {
  const sentences = [
    `Students everywhere are discovering ${topic} in one hour.`,
    'Teachers tell us the best part is watching students help each other debug.',
    'No experience is needed: every activity works in a browser, and many work without a computer at all.',
    `Last year more than a million learners tried ${topic} during Computer Science Education Week.`,
    'Each step adds one new idea, so nobody is left behind and fast learners can take on the bonus levels.',
    'At the end, every participant earns a certificate to take home.',
    'Schools in dozens of countries have translated the activity into their own language.',
    'Try it with a partner: pair programming doubles the fun and halves the frustration.'
  ]
  const out: string[] = []
  for (let i = 0; i < n; i++) {
    const count = 3 + Math.floor(rand() * 3)
    const parts: string[] = []
    for (let j = 0; j < count; j++) parts.push(pick(rand, sentences))
    out.push(`<p>${parts.join(' ')}</p>`)
  }
  return out.join('\n')
}

async function insertBatched<T extends keyof Database & string> (db: Kysely<Database>, table: T, rows: Array<Record<string, unknown>>, batch = 1000): Promise<void> {
  for (let i = 0; i < rows.length; i += batch) {
    await db.insertInto(table).values(rows.slice(i, i + batch) as never).execute()
  }
}

export interface SeedResult { seeded: boolean, sizes: SeedSizes }

/**
 * Fills an empty database; a database that already has tutorials is left
 * alone, so it is safe on every start.
 */
export async function seed (db: Kysely<Database>, options: { sizes?: Partial<SeedSizes>, seed?: number, now?: Date } = {}): Promise<SeedResult> {
  const sizes = { ...DEFAULT_SIZES, ...options.sizes }
  const existing = await db.selectFrom('tutorials').select(db.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
  if (Number(existing.n) > 0) return { seeded: false, sizes }
  const rand = prng(options.seed ?? 2026)
  const now = options.now ?? new Date('2026-11-20T12:00:00Z')
  const daysAgo = (d: number) => new Date(now.getTime() - d * 86_400_000)

  await db.transaction().execute(async (trx) => {
    const tutorials: Array<Record<string, unknown>> = []
    const seen = new Set<string>()
    for (let i = 0; tutorials.length < sizes.tutorials; i++) {
      const title = `${pick(rand, SUBJECTS)} ${pick(rand, FLAVOURS)}${i >= SUBJECTS.length * FLAVOURS.length ? ` ${Math.floor(i / (SUBJECTS.length * FLAVOURS.length)) + 1}` : ''}`
      let slug = slugify(title)
      if (seen.has(slug)) slug = `${slug}-${i}`
      seen.add(slug)
      const [minAge, maxAge] = pick(rand, AGES)
      tutorials.push({
        slug, title,
        summary: `A ${pick(rand, MINUTES)}-minute activity where you ${pick(rand, ['build', 'design', 'program', 'animate', 'solve'])} your own ${title.split(' ')[0].toLowerCase()} project.`,
        body_html: paragraphs(rand, title, 3),
        level: pick(rand, LEVELS), min_age: minAge, max_age: maxAge, minutes: pick(rand, MINUTES), partner: pick(rand, PARTNERS),
        published_at: daysAgo(Math.floor(rand() * 700)), updated_at: daysAgo(Math.floor(rand() * 30))
      })
    }
    await insertBatched(trx, 'tutorials', tutorials)

    const news: Array<Record<string, unknown>> = []
    for (let i = 0; i < sizes.news; i++) {
      const [topic, plural] = pick(rand, NEWS_TOPICS)
      const title = `${topic.replace(/^./, (c) => c.toUpperCase())} ${pick(rand, NEWS_VERBS)[plural ? 1 : 0]} ${pick(rand, PLACES)}`
      const published = daysAgo(i * 0.5 + rand() * 0.4)
      news.push({
        slug: `${slugify(title)}-${i + 1}`, title,
        summary: `${title}: what happened, what students built, and how your school can join.`,
        body_html: paragraphs(rand, pick(rand, NEWS_TOPICS)[0], 4),
        author: `${pick(rand, FIRST)} ${pick(rand, LAST)}`,
        published_at: published, updated_at: published
      })
    }
    await insertBatched(trx, 'news', news)

    const newsIds = (await trx.selectFrom('news').select('id').orderBy('id').execute()).map((r) => r.id)
    const tutorialIds = (await trx.selectFrom('tutorials').select('id').orderBy('id').execute()).map((r) => r.id)

    const comments: Array<Record<string, unknown>> = []
    for (let i = 0; i < sizes.comments; i++) {
      // Popular (recent) articles get most comments: a skewed pick toward the first ids.
      const idx = Math.floor(Math.pow(rand(), 2.5) * newsIds.length)
      comments.push({
        news_id: newsIds[newsIds.length - 1 - idx], author: `${pick(rand, FIRST)} ${pick(rand, LAST).charAt(0)}.`,
        body: pick(rand, COMMENT_BITS), created_at: daysAgo(rand() * 400)
      })
    }
    await insertBatched(trx, 'comments', comments)

    const events: Array<Record<string, unknown>> = []
    for (let i = 0; i < sizes.events; i++) {
      const idx = Math.floor(Math.pow(rand(), 1.8) * SEED_COUNTRIES.length)
      const [country, cities] = SEED_COUNTRIES[idx]
      const city = pick(rand, cities)
      const organizer = `${pick(rand, FIRST)} ${pick(rand, LAST)}`
      events.push({
        organizer, email: `${slugify(organizer).replace(/-/g, '.')}${i}@school.example`,
        school: `${city} ${pick(rand, ['Primary School', 'Middle School', 'High School', 'Academy', 'Public Library', 'Community Center'])}`,
        country, city, expected_participants: 10 + Math.floor(rand() * 290),
        event_date: new Date(now.getTime() + Math.floor(rand() * 40 - 10) * 86_400_000).toISOString().slice(0, 10),
        created_at: daysAgo(rand() * 60)
      })
    }
    await insertBatched(trx, 'events', events)

    const completions: Array<Record<string, unknown>> = []
    for (let i = 0; i < sizes.completions; i++) {
      completions.push({
        id: `seed${i.toString(36).padStart(8, '0')}`, tutorial_id: pick(rand, tutorialIds),
        name: `${pick(rand, FIRST)} ${pick(rand, LAST)}`, country: SEED_COUNTRIES[Math.floor(Math.pow(rand(), 1.8) * SEED_COUNTRIES.length)][0],
        created_at: daysAgo(rand() * 300)
      })
    }
    await insertBatched(trx, 'completions', completions)

    // participants = everyone who finished a tutorial + everyone expected at an event.
    await sql`insert into counters (name, value)
      select 'participants', (select count(*) from completions) + (select coalesce(sum(expected_participants), 0) from events)
      on conflict (name) do update set value = excluded.value`.execute(trx)
  })
  return { seeded: true, sizes }
}
