from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('username', fields.CharField(unique=True, max_length=32)),
                ('email', fields.CharField(unique=True, max_length=254)),
                ('password_hash', fields.CharField(max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'users', 'app': 'models', 'indexes': [Index(fields=['created_at', 'id'])], 'pk_attr': 'id', 'table_description': 'An account; the password is stored only as an argon2 hash.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Follow',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('follower', fields.ForeignKeyField('models.User', source_field='follower_id', db_constraint=True, to_field='id', related_name='following', on_delete=OnDelete.CASCADE)),
                ('followee', fields.ForeignKeyField('models.User', source_field='followee_id', db_index=True, db_constraint=True, to_field='id', related_name='followers', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'follows', 'app': 'models', 'unique_together': (('follower', 'followee'),), 'pk_attr': 'id', 'table_description': '``follower`` follows ``followee``; a pair appears at most once, never with itself.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Job',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='jobs', on_delete=OnDelete.CASCADE)),
                ('title', fields.CharField(max_length=200)),
                ('company', fields.CharField(max_length=200)),
                ('location', fields.CharField(max_length=120)),
                ('location_key', fields.CharField(max_length=120)),
                ('remote', fields.BooleanField(default=False)),
                ('salary_min', fields.IntField(null=True)),
                ('salary_max', fields.IntField(null=True)),
                ('description', fields.TextField(default='', unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'jobs', 'app': 'models', 'indexes': [Index(fields=['created_at', 'id']), Index(fields=['location_key', 'created_at', 'id']), Index(fields=['remote', 'created_at', 'id'])], 'pk_attr': 'id', 'table_description': 'A job offer; salary_min <= salary_max when both are set (checked by the handlers).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='JobTag',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('job', fields.ForeignKeyField('models.Job', source_field='job_id', db_constraint=True, to_field='id', related_name='tags', on_delete=OnDelete.CASCADE)),
                ('tag', fields.CharField(db_index=True, max_length=40)),
            ],
            options={'table': 'job_tags', 'app': 'models', 'unique_together': (('job', 'tag'),), 'pk_attr': 'id', 'table_description': 'One tag of a job: a row per (job, tag) so tag filters and counts use an index.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Post',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('author', fields.ForeignKeyField('models.User', source_field='author_id', db_constraint=True, to_field='id', related_name='posts', on_delete=OnDelete.CASCADE)),
                ('content', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'posts', 'app': 'models', 'indexes': [Index(fields=['created_at', 'id']), Index(fields=['author_id', 'created_at', 'id'])], 'pk_attr': 'id', 'table_description': 'A post of 1 to 2,000 characters by one author.'},
            bases=['Model'],
        ),
    ]
