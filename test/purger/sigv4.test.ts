/** SigV4 against the worked example of AWS's documentation (IAM ListUsers, 2015-08-30). */
import t from 'tap'
import { amzDate, signRequest } from '../../purger/sigv4.js'

t.test('the documented example signs to the documented signature', async (t) => {
  const headers = signRequest({
    method: 'GET',
    url: new URL('https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08'),
    headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
    body: '',
    region: 'us-east-1',
    service: 'iam',
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' },
    amzDate: '20150830T123600Z'
  })
  t.equal(headers.authorization, 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7')
  t.equal(amzDate(Date.UTC(2015, 7, 30, 12, 36, 0)), '20150830T123600Z')
})
