/** A 400 `validation` error that names its field (design §7: "400 (validation, naming the field)"). */
import { Errors } from '../common/errors.js'

export type FieldError = Error & { field: string }

/** `fieldError('country', 'is not …')` → "country is not …", field `country`. */
export function fieldError (field: string, problem: string): FieldError {
  return fieldMessage(field, `${field} ${problem}`)
}

/** The same with a message that is already a sentence about the field. */
export function fieldMessage (field: string, message: string): FieldError {
  return Object.assign(new Errors.VALIDATION(message), { field })
}
