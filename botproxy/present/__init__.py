"""What people read: the recorder's console, session text and JSON, check results as text, HTML
reports, JUnit XML, and visible bidi controls."""
